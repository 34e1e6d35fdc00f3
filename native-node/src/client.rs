//! The client helper: a DHT node that does lookups on behalf of an app.

use std::{num::NonZeroUsize, time::Duration};

use anyhow::{Context, anyhow};
use dht_core::{
    Event, GetRecordError, Namespace, NodeHandle, PeerAddresses, Quorum, Role, ServerMode,
    libp2p::PeerId,
    record::{MAX_KEY_LEN, display_key},
};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::{
    cli::{ClientArgs, ClientOperation},
    exit::Failure,
    host::{self, Running},
    output::{self, Output},
    roles::{load_identity, print_until_signal},
};

/// The longest request line `serve` reads, beyond the largest record.
const LINE_OVERHEAD: usize = 4096;

pub(crate) async fn run(args: ClientArgs, output: Output) -> Result<(), Failure> {
    let operation = Operation::check(&args.operation, args.node.max_record_size).await?;
    if args.node.bootstrap_addresses().is_empty() {
        return Err(Failure::usage(anyhow!(
            "a client joins an existing DHT: pass --bootstrap MULTIADDR (or set DHT_BOOTSTRAP)"
        )));
    }
    let keypair = load_identity(&args.node, None)?;
    // A one-shot operation queries the DHT without offering to serve it: a
    // process that exits a moment later must not leave a dead entry in
    // other nodes' routing tables, which their lookups would wait on.
    let mode = match operation {
        Operation::Run | Operation::Serve => ServerMode::Always,
        _ => ServerMode::Never,
    };
    let config = args
        .node
        .config()
        .server_mode(mode)
        .build()
        .map_err(Failure::usage)?;
    // A serving node also listens on WebSocket, so that browser tabs can
    // reach it in lookups.
    let websocket = (mode == ServerMode::Always).then_some(0);
    let listen = args.node.listen_addresses(0, 0, websocket, None);
    let mut running = host::start(
        keypair,
        None,
        config,
        Role::ClientHelper,
        &listen,
        &args.node.external,
    )
    .await?;

    let result = match join(&mut running, args.join_timeout).await {
        Ok(()) => {
            operation
                .perform(&mut running, args.node.max_record_size, output)
                .await
        }
        Err(failure) => Err(failure),
    };
    running.stop().await;
    result
}

/// Waits until the first bootstrap lookup finished.
async fn join(running: &mut Running, timeout: Duration) -> Result<(), Failure> {
    let mut last_error = None;
    let joined = tokio::time::timeout(timeout, async {
        while let Some(event) = running.events.next().await {
            match event {
                Event::Bootstrapped { .. } => return true,
                Event::BootstrapPeerUnreachable { peer, error, .. } => {
                    last_error = Some(format!("{peer}: {error}"))
                }
                _ => {}
            }
        }
        false
    })
    .await;
    match joined {
        Ok(true) => Ok(()),
        _ => Err(Failure::runtime(anyhow!(
            "could not join the DHT within {timeout:?}: {}",
            last_error.unwrap_or_else(|| "no bootstrap peer answered".into())
        ))),
    }
}

/// A client operation with its input already checked, so that bad input
/// fails before the node starts.
enum Operation {
    Get {
        key: Vec<u8>,
        quorum: Quorum,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
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
    if key.is_empty() {
        return Err(Failure::usage(anyhow!("the record key is empty")));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Failure::usage(anyhow!(
            "the record key is {} bytes; the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(key.as_bytes().to_vec())
}

fn quorum(count: usize) -> Result<Quorum, Failure> {
    NonZeroUsize::new(count)
        .map(Quorum::N)
        .ok_or_else(|| Failure::usage(anyhow!("--quorum must be at least 1")))
}

impl Operation {
    async fn check(operation: &ClientOperation, max_record_size: usize) -> Result<Self, Failure> {
        Ok(match operation {
            ClientOperation::Get { key, quorum: q } => Operation::Get {
                key: checked_key(key)?,
                quorum: quorum(*q)?,
            },
            ClientOperation::Put {
                key,
                value,
                value_file,
                quorum: q,
            } => {
                let value = match (value, value_file) {
                    (Some(value), _) => value.clone().into_bytes(),
                    (None, Some(path)) => tokio::fs::read(path)
                        .await
                        .with_context(|| format!("cannot read the value file {}", path.display()))
                        .map_err(Failure::usage)?,
                    (None, None) => {
                        return Err(Failure::usage(anyhow!("give a VALUE or --value-file")));
                    }
                };
                if value.len() > max_record_size {
                    return Err(Failure::usage(anyhow!(
                        "the record value is {} bytes; the limit is {max_record_size} (see --max-record-size)",
                        value.len()
                    )));
                }
                Operation::Put {
                    key: checked_key(key)?,
                    value,
                    quorum: quorum(*q)?,
                }
            }
            ClientOperation::Closest { key, peer } => Operation::Closest {
                key: match (key, peer) {
                    (_, Some(peer)) => peer.to_bytes(),
                    (Some(key), None) => checked_key(key)?,
                    (None, None) => return Err(Failure::usage(anyhow!("give a KEY or --peer"))),
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
        running: &mut Running,
        max_record_size: usize,
        output: Output,
    ) -> Result<(), Failure> {
        let handle = running.handle.clone();
        match self {
            Operation::Get { key, quorum } => {
                let found =
                    handle
                        .get_record_with_quorum(key, quorum)
                        .await
                        .map_err(|e| match e {
                            GetRecordError::NotFound { .. } => Failure::not_found(e),
                            other => Failure::runtime(other),
                        })?;
                match output {
                    Output::Json => output.json(&json!({ "type": "record", "record": found })),
                    Output::Text => output::raw(&found.value),
                }
            }
            Operation::Put { key, value, quorum } => {
                let stored = handle.put_record_with_quorum(key, value, quorum).await?;
                match output {
                    Output::Json => output.json(&json!({ "type": "stored", "result": stored })),
                    Output::Text => output::line(&format!(
                        "stored {} ({} requests, {} ms)",
                        display_key(&stored.key),
                        stored.stats.requests,
                        stored.stats.duration.unwrap_or_default().as_millis()
                    )),
                }
            }
            Operation::Closest { key } => {
                let peers = handle.closest_peers(key).await?;
                print_peers(output, "closest", &peers);
            }
            Operation::Discover { namespace } => {
                let peers = handle.discover(&namespace).await?;
                print_peers(output, "members", &peers);
            }
            Operation::Report => {
                let report = handle.network_report().await?;
                output.report(&report);
            }
            Operation::Run => {
                let addresses = running.dialable_addresses(&[]).await;
                output.started(
                    dht_core::RoleKind::ClientHelper,
                    handle.local_peer_id(),
                    &addresses,
                );
                print_until_signal(running, None, output).await;
            }
            Operation::Serve => serve(&handle, tokio::io::stdin(), max_record_size).await,
        }
        Ok(())
    }
}

fn print_peers(output: Output, kind: &str, peers: &[PeerAddresses]) {
    match output {
        Output::Json => output.json(&json!({ "type": kind, "peers": peers })),
        Output::Text => {
            for peer in peers {
                let addresses: Vec<String> =
                    peer.addresses.iter().map(ToString::to_string).collect();
                output::line(&format!("{} {}", peer.peer_id, addresses.join(" ")));
            }
        }
    }
}

/// Answers requests read from `input`, one per line, with one JSON line each,
/// until `quit`, end of input, or Ctrl-C.
async fn serve(handle: &NodeHandle, input: impl AsyncRead + Unpin, max_record_size: usize) {
    let limit = max_record_size + LINE_OVERHEAD;
    let mut reader = BufReader::new(input);
    let shutdown = host::shutdown_signal();
    tokio::pin!(shutdown);
    output::line(
        &json!({ "ready": true, "peerId": handle.local_peer_id().to_string() }).to_string(),
    );
    loop {
        let mut line = Vec::new();
        let read = tokio::select! {
            read = read_line(&mut reader, &mut line, limit) => read,
            () = &mut shutdown => return,
        };
        let reply = match read {
            Ok(0) => return,
            Ok(_) => match std::str::from_utf8(&line) {
                Ok(text) if text.trim() == "quit" => return,
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => answer(handle, text.trim_end_matches(['\r', '\n'])).await,
                Err(_) => json!({ "ok": false, "error": "the request is not UTF-8" }),
            },
            Err(error) => json!({ "ok": false, "error": error.to_string() }),
        };
        output::line(&reply.to_string());
    }
}

/// Reads one line of at most `limit` bytes; a longer line is skipped and
/// reported as an error.
async fn read_line(
    reader: &mut (impl AsyncBufReadExt + Unpin),
    line: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<usize> {
    loop {
        let available = reader.fill_buf().await?;
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
                reader.read_until(b'\n', &mut rest).await?;
            }
            line.clear();
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the request line is longer than {limit} bytes"),
            ));
        }
        if done {
            return Ok(line.len());
        }
    }
}

async fn answer(handle: &NodeHandle, request: &str) -> Value {
    let (verb, rest) = request.split_once(' ').unwrap_or((request, ""));
    let result: anyhow::Result<Value> = async {
        match verb {
            "get" => {
                let found = handle.get_record(checked_key(rest).map_err(|f| f.error)?).await?;
                Ok(json!({ "record": found }))
            }
            "put" => {
                let (key, value) = rest.split_once(' ').ok_or_else(|| anyhow!("usage: put KEY VALUE"))?;
                let stored = handle
                    .put_record(checked_key(key).map_err(|f| f.error)?, value.as_bytes().to_vec())
                    .await?;
                Ok(json!({ "stored": stored }))
            }
            "closest" => {
                let key = match rest.parse::<PeerId>() {
                    Ok(peer) => peer.to_bytes(),
                    Err(_) => checked_key(rest).map_err(|f| f.error)?,
                };
                Ok(json!({ "peers": handle.closest_peers(key).await? }))
            }
            "discover" => Ok(json!({ "peers": handle.discover(&Namespace::new(rest)?).await? })),
            "register" => {
                handle.register(&Namespace::new(rest)?).await?;
                Ok(json!({ "registered": rest }))
            }
            "report" => Ok(json!({ "report": handle.network_report().await? })),
            other => Err(anyhow!(
                "unknown request {other:?}; expected get, put, closest, discover, register, report or quit"
            )),
        }
    }
    .await;
    match result {
        Ok(Value::Object(mut fields)) => {
            fields.insert("ok".into(), Value::Bool(true));
            Value::Object(fields)
        }
        Ok(other) => json!({ "ok": true, "result": other }),
        Err(error) => json!({ "ok": false, "error": format!("{error:#}") }),
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
