//! Walking an error's causes: rendering them all, and finding one of a
//! given type under the layers transports wrap around libp2p's errors.

use std::{error::Error, io};

/// `error` and each of its causes, separated by `: `, leaving out a cause
/// whose text the message already contains (libp2p's messages often repeat
/// their source).
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Causes followed at most by [`find_cause`].
const MAX_CAUSES: usize = 32;

/// The first error of type `T` among `error` and its causes. Transports wrap
/// libp2p's errors in layers of their own; an `io::Error` hides the error it
/// wraps from `source`, so it is opened with `get_ref`.
pub(crate) fn find_cause<T: Error + 'static>(error: &io::Error) -> Option<&T> {
    let mut next: Option<&(dyn Error + 'static)> = error.get_ref().map(|e| e as _);
    for _ in 0..MAX_CAUSES {
        let current = next?;
        if let Some(found) = current.downcast_ref::<T>() {
            return Some(found);
        }
        next = match current.downcast_ref::<io::Error>() {
            Some(inner) => inner.get_ref().map(|e| e as _),
            None => current.source(),
        };
    }
    None
}
