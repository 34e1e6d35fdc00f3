//! How results, errors and events look outside Rust: one serde shape each,
//! shared by the command line's `--json`, `client serve`, the HTTP API and
//! the browser (feature `serde`).
//!
//! - **Bytes** (record keys and values) are carried losslessly as an object:
//!   `{"text": "hello"}` when they are UTF-8, `{"base64": "AAEC"}` (standard
//!   alphabet, padded) otherwise.
//! - **Peer ids, addresses and namespaces** are strings; **durations** are
//!   milliseconds in fields ending in `Ms`.
//! - **Errors** are `{"code": "not-found", "message": "record k was not
//!   found"}`: the code is stable ([`ErrorCode`]), the message is for
//!   people and names every cause.
//! - **Answers** to one request are an [`Answer`]: `{"ok": true, "record":
//!   {…}}` or `{"ok": false, "error": {…}}`.
//! - **Events** are objects tagged by `type`, see [`crate::Event`].
//!
//! ```
//! use dht_core::{api::Answer, error::RecordError, PutRecordOk, QueryStats};
//!
//! let stored = Answer::Stored(PutRecordOk { key: b"/ns-dht/m/12D3KooW\xff".to_vec(), seq: Some(7), stored: 20, stats: QueryStats::default() });
//! assert_eq!(
//!     serde_json::to_value(&stored).unwrap(),
//!     serde_json::json!({ "ok": true, "stored": {
//!         "key": { "base64": "L25zLWRodC9tLzEyRDNLb29X/w==" },
//!         "seq": 7,
//!         "stored": 20,
//!         "stats": { "requests": 0, "successes": 0, "failures": 0, "durationMs": null },
//!     }}),
//! );
//! let refused = Answer::error(&RecordError::EmptyKey);
//! assert_eq!(
//!     serde_json::to_value(&refused).unwrap(),
//!     serde_json::json!({ "ok": false, "error": { "code": "empty-key", "message": "the record key is empty" } }),
//! );
//! ```

use serde::{Serialize, Serializer, ser::SerializeMap};

use crate::{
    error::{ErrorCode, chain},
    handle::{GetRecordOk, PeerAddresses, PutRecordOk},
    namespace::Namespace,
    report::NetworkReport,
};

/// An error as it leaves Rust: a stable code and a message naming every cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorReport {
    /// The stable code, see [`ErrorCode`].
    pub code: &'static str,
    /// What went wrong, with every cause, for people.
    pub message: String,
}

impl ErrorReport {
    /// The report of a library error.
    pub fn new(error: &(impl ErrorCode + ?Sized)) -> Self {
        Self::with_code(error.code(), error)
    }

    /// The report of any error, under a code the caller chooses (hosts use
    /// it for their own errors, such as a malformed request line).
    pub fn with_code(code: &'static str, error: &(impl std::error::Error + ?Sized)) -> Self {
        Self {
            code,
            message: chain(&error),
        }
    }
}

/// The answer to one request, as every host hands it out.
///
/// Serialized as `{"ok": true, "<kind>": <result>}`, where kind is the
/// variant's camelCase name, or `{"ok": false, "error": {"code", "message"}}`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Answer {
    /// A record was found.
    Record(GetRecordOk),
    /// A record was stored.
    Stored(PutRecordOk),
    /// The peers closest to a key.
    Peers(Vec<PeerAddresses>),
    /// The members of a namespace.
    Members(Vec<PeerAddresses>),
    /// This node registered in a namespace.
    Registered(Namespace),
    /// This node left a namespace.
    Unregistered(Namespace),
    /// The node's view of the network.
    Report(NetworkReport),
    /// The request failed.
    Error(ErrorReport),
}

impl Answer {
    /// The answer for a failed request.
    pub fn error(error: &(impl ErrorCode + ?Sized)) -> Self {
        Answer::Error(ErrorReport::new(error))
    }

    /// `result` as an answer: `ok` makes the success, the error reports itself.
    pub fn from_result<T, E: ErrorCode>(result: Result<T, E>, ok: impl FnOnce(T) -> Self) -> Self {
        match result {
            Ok(value) => ok(value),
            Err(error) => Answer::error(&error),
        }
    }

    /// Whether the request succeeded.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Answer::Error(_))
    }
}

impl Serialize for Answer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("ok", &self.is_ok())?;
        match self {
            Answer::Record(record) => map.serialize_entry("record", record)?,
            Answer::Stored(stored) => map.serialize_entry("stored", stored)?,
            Answer::Peers(peers) => map.serialize_entry("peers", peers)?,
            Answer::Members(members) => map.serialize_entry("members", members)?,
            Answer::Registered(namespace) => {
                map.serialize_entry("registered", namespace.as_str())?
            }
            Answer::Unregistered(namespace) => {
                map.serialize_entry("unregistered", namespace.as_str())?
            }
            Answer::Report(report) => map.serialize_entry("report", report)?,
            Answer::Error(error) => map.serialize_entry("error", error)?,
        }
        map.end()
    }
}

/// Serializers for the shapes described in the [module docs](self).
pub(crate) mod ser {
    use std::{error::Error, fmt::Display, time::Duration};

    use data_encoding::BASE64;
    use serde::{
        Serializer,
        ser::{SerializeMap, SerializeSeq},
    };

    use crate::error::ErrorCode;

    pub(crate) fn display<S: Serializer, T: Display>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub(crate) fn display_opt<S: Serializer, T: Display>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => s.collect_str(value),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn display_all<S: Serializer, T: Display>(
        values: &[T],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(values.len()))?;
        for value in values {
            seq.serialize_element(&value.to_string())?;
        }
        seq.end()
    }

    /// Bytes as `{"text": …}` when they are UTF-8, else `{"base64": …}`.
    pub(crate) fn data<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        match std::str::from_utf8(bytes) {
            Ok(text) => map.serialize_entry("text", text)?,
            Err(_) => map.serialize_entry("base64", &BASE64.encode(bytes))?,
        }
        map.end()
    }

    /// An error as `{"code": …, "message": …}`.
    pub(crate) fn error<S: Serializer, E: ErrorCode>(error: &E, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&super::ErrorReport::new(error), s)
    }

    /// A shared libp2p error under a fixed code.
    pub(crate) fn dial_failure<S: Serializer>(
        error: &crate::error::DialFailure,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let error: &dyn Error = error.as_ref();
        serde::Serialize::serialize(&super::ErrorReport::with_code("dial-failed", error), s)
    }

    pub(crate) fn duration_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn duration_ms_opt<S: Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration_ms(d, s),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::GetRecordError;

    #[derive(Serialize)]
    struct Bytes<'a>(#[serde(serialize_with = "ser::data")] &'a [u8]);

    #[test]
    fn bytes_are_text_when_utf8_and_base64_otherwise() {
        let value = |bytes: &[u8]| serde_json::to_value(Bytes(bytes)).unwrap();
        assert_eq!(value(b"hello"), json!({ "text": "hello" }));
        // A newline is text; the text "0x0a" is text too, and they differ.
        assert_eq!(value(b"\n"), json!({ "text": "\n" }));
        assert_eq!(value(b"0x0a"), json!({ "text": "0x0a" }));
        assert_eq!(value(&[0xff, 0x0a]), json!({ "base64": "/wo=" }));
        assert_eq!(value(b""), json!({ "text": "" }));
    }

    #[test]
    fn errors_carry_their_code_and_message() {
        let answer = Answer::error(&GetRecordError::NotFound {
            key: "k".into(),
            forgeries: 0,
        });
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({ "ok": false, "error": { "code": "not-found", "message": "record k was not found" } })
        );
    }
}
