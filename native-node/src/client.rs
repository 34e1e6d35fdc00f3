//! The client helper: a DHT node that does lookups on behalf of an app,
//! once from the command line or line by line from stdin (`serve`). Every
//! result is a `dht_core::api::Answer`, the same shape the HTTP API and the
//! browser give.

use std::{num::NonZeroUsize, path::PathBuf};

use anyhow::anyhow;
use dht_core::{
    ErrorCode, Namespace, NodeHandle, Quorum, Role, ServerMode,
    api::Answer,
    libp2p::{PeerId, identity::Keypair},
    record::{Write, check_key, check_record_key, check_value},
};
use native_node::{ListenSet, NativeNode, node::dialable_addresses};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::{
    cli::{ClientArgs, ClientOperation, ReachabilityChoice},
    exit::Failure,
    output::{self, Output},
    roles::{load_identity, print_until_signal, start, stop},
    signal,
};

/// The longest request line `serve` reads, beyond the largest record.
const LINE_OVERHEAD: usize = 4096;

pub(crate) async fn run(args: ClientArgs, output: Output) -> Result<(), Failure> {
    let operation = Operation::check(&args.operation, args.node.max_record_size).await?;
    if args.node.bootstrap_addresses().is_empty() {
        return Err(Failure::usage(
            "no-bootstrap",
            anyhow!(
                "a client joins an existing DHT: pass --bootstrap MULTIADDR (or set DHT_BOOTSTRAP)"
            ),
        ));
    }
    let keypair = load_identity(&args.node, None)?;
    // Mutable records are signed with the node's own identity.
    let owner = keypair.clone();
    // A one-shot operation queries the DHT without offering to serve it: a
    // process that exits a moment later must not leave a dead entry in
    // other nodes' routing tables, which their lookups would wait on.
    let serving = matches!(operation, Operation::Run | Operation::Serve);
    let reachability = args.node.reachability;
    let (config, set): (_, fn(_) -> ListenSet) = match (serving, reachability) {
        // `--reachability` sets the mode.
        (true, _) => (args.node.config(false)?, ListenSet::serving),
        (false, ReachabilityChoice::Public) => (
            args.node.config(false)?.server_mode(ServerMode::Never),
            ListenSet::querying,
        ),
        (false, _) => {
            return Err(Failure::usage(
                "one-shot-cannot-serve",
                anyhow!(
                    "--reachability {} needs `client run` or `client serve`: a one-shot operation does not serve",
                    reachability.name()
                ),
            ));
        }
    };
    let config = config.build().map_err(Failure::input)?;
    let listen = args.node.listen_addresses(set);
    let mut node = start(
        &args.node,
        keypair,
        None,
        &config,
        &Role::ClientHelper,
        &listen,
    )
    .await?;

    let result = match node.joined(args.join_timeout).await {
        Ok(_) => {
            operation
                .perform(&mut node, &owner, args.node.max_record_size, output)
                .await
        }
        Err(error) => Err(Failure::of(error)),
    };
    let stopped = stop(node).await;
    result.and(stopped)
}

/// A client operation with its input already checked, so that bad input
/// fails before the node starts.
enum Operation {
    Get {
        key: Vec<u8>,
        quorum: Quorum,
    },
    Put {
        /// The name of a mutable record, or `None` for an immutable one.
        name: Option<Vec<u8>>,
        value: Vec<u8>,
        seq: Option<u64>,
        quorum: Quorum,
    },
    Closest {
        key: Vec<u8>,
    },
    Discover {
        namespace: Namespace,
    },
    Report,
    Run,
    Serve,
}

fn checked_key(key: &str) -> Result<Vec<u8>, Failure> {
    check_key(key.as_bytes()).map_err(Failure::input)?;
    Ok(key.as_bytes().to_vec())
}

fn quorum(count: usize) -> Result<Quorum, Failure> {
    NonZeroUsize::new(count)
        .map(Quorum::N)
        .ok_or_else(|| Failure::usage("bad-quorum", anyhow!("--quorum must be at least 1")))
}

/// The value of a put: the argument, or the contents of the value file.
async fn read_value(
    value: &Option<String>,
    value_file: &Option<PathBuf>,
    max_record_size: usize,
) -> Result<Vec<u8>, Failure> {
    let value = match (value, value_file) {
        (Some(value), _) => value.clone().into_bytes(),
        (None, Some(path)) => tokio::fs::read(path).await.map_err(|error| {
            Failure::usage(
                "unreadable-value-file",
                anyhow::Error::new(error)
                    .context(format!("cannot read the value file {}", path.display())),
            )
        })?,
        (None, None) => {
            return Err(Failure::usage(
                "bad-request",
                anyhow!("give a VALUE or --value-file"),
            ));
        }
    };
    check_value(&value, max_record_size).map_err(Failure::input)?;
    Ok(value)
}

impl Operation {
    async fn check(operation: &ClientOperation, max_record_size: usize) -> Result<Self, Failure> {
        Ok(match operation {
            ClientOperation::Get { key, quorum: q } => Operation::Get {
                key: {
                    check_record_key(key.as_bytes()).map_err(Failure::input)?;
                    key.as_bytes().to_vec()
                },
                quorum: quorum(*q)?,
            },
            ClientOperation::Put {
                name,
                value,
                value_file,
                seq,
                quorum: q,
            } => {
                let name = name.clone().into_bytes();
                // The owner does not change the key's validity; any will do.
                Write::mutable(&Keypair::generate_ed25519(), name.clone(), "")
                    .key()
                    .map_err(Failure::input)?;
                Operation::Put {
                    name: Some(name),
                    value: read_value(value, value_file, max_record_size).await?,
                    seq: *seq,
                    quorum: quorum(*q)?,
                }
            }
            ClientOperation::PutImmutable {
                value,
                value_file,
                quorum: q,
            } => Operation::Put {
                name: None,
                value: read_value(value, value_file, max_record_size).await?,
                seq: None,
                quorum: quorum(*q)?,
            },
            ClientOperation::Closest { key, peer } => Operation::Closest {
                key: match (key, peer) {
                    (_, Some(peer)) => peer.to_bytes(),
                    (Some(key), None) => checked_key(key)?,
                    (None, None) => {
                        return Err(Failure::usage(
                            "bad-request",
                            anyhow!("give a KEY or --peer"),
                        ));
                    }
                },
            },
            ClientOperation::Discover { namespace } => Operation::Discover {
                namespace: namespace.clone(),
            },
            ClientOperation::Report => Operation::Report,
            ClientOperation::Run => Operation::Run,
            ClientOperation::Serve => Operation::Serve,
        })
    }

    async fn perform(
        self,
        node: &mut NativeNode,
        owner: &Keypair,
        max_record_size: usize,
        output: Output,
    ) -> Result<(), Failure> {
        let handle = node.handle.clone();
        let answer = match self {
            Operation::Get { key, quorum } => handle
                .get_record_with_quorum(key, quorum)
                .await
                .map(Answer::Record)
                .map_err(Failure::of)?,
            Operation::Put {
                name,
                value,
                seq,
                quorum,
            } => {
                let write = match (name, seq) {
                    (Some(name), None) => Write::mutable(owner, name, value),
                    (Some(name), Some(seq)) => {
                        Write::mutable(owner, name, value).with_sequence(seq)
                    }
                    (None, _) => Write::immutable(value),
                };
                handle.put_with_quorum(write, quorum).await
            }
            .map(Answer::Stored)
            .map_err(Failure::of)?,
            Operation::Closest { key } => handle
                .closest_peers(key)
                .await
                .map(Answer::Peers)
                .map_err(Failure::of)?,
            Operation::Discover { namespace } => handle
                .discover(&namespace)
                .await
                .map(Answer::Members)
                .map_err(Failure::of)?,
            Operation::Report => handle
                .network_report()
                .await
                .map(Answer::Report)
                .map_err(Failure::of)?,
            Operation::Run => {
                let addresses = dialable_addresses(node, &[]).await;
                output.started(dht_core::RoleKind::ClientHelper, node.peer_id(), &addresses);
                print_until_signal(node, None, None, output).await;
                return Ok(());
            }
            Operation::Serve => {
                serve(&handle, owner, tokio::io::stdin(), max_record_size).await;
                return Ok(());
            }
        };
        output.answer(&answer);
        Ok(())
    }
}

/// A request line `serve` could not take.
#[derive(Debug, thiserror::Error)]
enum BadRequest {
    #[error("the request is not UTF-8")]
    NotUtf8,
    #[error("the request line is longer than {limit} bytes")]
    TooLong { limit: usize },
    #[error(
        "unknown request {0:?}; expected get, put, put-immutable, closest, discover, register, unregister, report or quit"
    )]
    UnknownVerb(String),
    #[error("usage: {0}")]
    Usage(&'static str),
    #[error("cannot read the request")]
    Read(#[source] std::io::Error),
}

impl ErrorCode for BadRequest {
    fn code(&self) -> &'static str {
        match self {
            BadRequest::TooLong { .. } => "request-too-large",
            BadRequest::Read(_) => "read-failed",
            _ => "bad-request",
        }
    }
}

/// Answers requests read from `input`, one per line, with one [`Answer`]
/// (a JSON line) each, until `quit`, end of input, or Ctrl-C.
async fn serve(
    handle: &NodeHandle,
    owner: &Keypair,
    input: impl AsyncRead + Unpin,
    max_record_size: usize,
) {
    let limit = max_record_size + LINE_OVERHEAD;
    let mut reader = BufReader::new(input);
    let shutdown = signal::shutdown();
    tokio::pin!(shutdown);
    output::line(
        &serde_json::json!({ "ready": true, "peerId": handle.local_peer_id().to_string() })
            .to_string(),
    );
    loop {
        let mut line = Vec::new();
        let read = tokio::select! {
            read = read_line(&mut reader, &mut line, limit) => read,
            () = &mut shutdown => return,
        };
        let answer = match read {
            Ok(0) => return,
            Ok(_) => match std::str::from_utf8(&line) {
                Ok(text) if text.trim() == "quit" => return,
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => answer(handle, owner, text.trim_end_matches(['\r', '\n'])).await,
                Err(_) => Answer::error(&BadRequest::NotUtf8),
            },
            Err(error) => Answer::error(&error),
        };
        Output::Json.answer(&answer);
    }
}

/// Reads one line of at most `limit` bytes; a longer line is skipped and
/// reported as an error.
async fn read_line(
    reader: &mut (impl AsyncBufReadExt + Unpin),
    line: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, BadRequest> {
    loop {
        let available = reader.fill_buf().await.map_err(BadRequest::Read)?;
        if available.is_empty() {
            return Ok(line.len());
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (end + 1, true),
            None => (available.len(), false),
        };
        let room = limit.saturating_sub(line.len());
        line.extend_from_slice(&available[..take.min(room)]);
        reader.consume(take);
        if line.len() >= limit && !(done && take <= room) {
            // Skip the rest of the oversized line.
            if !done {
                let mut rest = Vec::new();
                reader
                    .read_until(b'\n', &mut rest)
                    .await
                    .map_err(BadRequest::Read)?;
            }
            line.clear();
            return Err(BadRequest::TooLong { limit });
        }
        if done {
            return Ok(line.len());
        }
    }
}

/// Answers one request line; `put` signs with `owner`.
async fn answer(handle: &NodeHandle, owner: &Keypair, request: &str) -> Answer {
    let (verb, rest) = request.split_once(' ').unwrap_or((request, ""));
    let namespace = || Namespace::new(rest);
    match verb {
        "get" => Answer::from_result(handle.get_record(rest).await, Answer::Record),
        "put" => {
            let Some((name, value)) = rest.split_once(' ') else {
                return Answer::error(&BadRequest::Usage("put NAME VALUE"));
            };
            let write = Write::mutable(owner, name, value);
            Answer::from_result(handle.put(write).await, Answer::Stored)
        }
        "put-immutable" => {
            let write = Write::immutable(rest);
            Answer::from_result(handle.put(write).await, Answer::Stored)
        }
        "closest" => {
            let key = match rest.parse::<PeerId>() {
                Ok(peer) => peer.to_bytes(),
                Err(_) => rest.as_bytes().to_vec(),
            };
            Answer::from_result(handle.closest_peers(key).await, Answer::Peers)
        }
        "discover" => match namespace() {
            Ok(namespace) => {
                Answer::from_result(handle.discover(&namespace).await, Answer::Members)
            }
            Err(error) => Answer::error(&error),
        },
        "register" => match namespace() {
            Ok(namespace) => Answer::from_result(handle.register(&namespace).await, |()| {
                Answer::Registered(namespace.clone())
            }),
            Err(error) => Answer::error(&error),
        },
        "unregister" => match namespace() {
            Ok(namespace) => Answer::from_result(handle.unregister(&namespace).await, |()| {
                Answer::Unregistered(namespace.clone())
            }),
            Err(error) => Answer::error(&error),
        },
        "report" => Answer::from_result(handle.network_report().await, Answer::Report),
        other => Answer::error(&BadRequest::UnknownVerb(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_refused_and_skipped() {
        let input: &[u8] = b"short\nthis line is far too long\nnext\n";
        let mut reader = BufReader::new(input);
        let mut line = Vec::new();
        assert_eq!(read_line(&mut reader, &mut line, 10).await.unwrap(), 6);
        assert_eq!(line, b"short\n");
        line.clear();
        assert!(read_line(&mut reader, &mut line, 10).await.is_err());
        line.clear();
        assert_eq!(read_line(&mut reader, &mut line, 10).await.unwrap(), 5);
        assert_eq!(line, b"next\n");
        line.clear();
        assert_eq!(read_line(&mut reader, &mut line, 10).await.unwrap(), 0);
    }
}
