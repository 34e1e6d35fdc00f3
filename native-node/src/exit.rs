//! How a failure leaves the process: an exit status scripts can rely on
//! (listed in `--help`), a stable error code (printed with `--json`), and a
//! message with every cause on stderr.

use std::fmt;

use dht_core::{ErrorCode, api::ErrorReport};

/// A failure with the exit status and the code it maps to.
pub(crate) struct Failure {
    pub(crate) status: u8,
    pub(crate) code: &'static str,
    pub(crate) error: anyhow::Error,
}

/// The node or the operation failed.
const FAILED: u8 = 1;
/// Invalid command line or input.
const BAD_INPUT: u8 = 2;
/// The identity key file is unreadable or corrupt.
const BAD_IDENTITY: u8 = 3;
/// The record was not found.
const NOT_FOUND: u8 = 4;

impl Failure {
    /// A library error from what the node or the operation did: exit status
    /// 1, or 4 for a record that was not found.
    pub(crate) fn of(error: impl ErrorCode + Send + Sync + 'static) -> Self {
        let code = error.code();
        let status = if code == "not-found" {
            NOT_FOUND
        } else {
            FAILED
        };
        Self {
            status,
            code,
            error: error.into(),
        }
    }

    /// A library error about the input (a key, a value, a namespace, a
    /// setting): exit status 2.
    pub(crate) fn input(error: impl ErrorCode + Send + Sync + 'static) -> Self {
        Self {
            status: BAD_INPUT,
            code: error.code(),
            error: error.into(),
        }
    }

    /// A failure this binary found itself: exit status 1.
    pub(crate) fn failed(code: &'static str, error: anyhow::Error) -> Self {
        Self {
            status: FAILED,
            code,
            error,
        }
    }

    /// Invalid input this binary found itself: exit status 2.
    pub(crate) fn usage(code: &'static str, error: anyhow::Error) -> Self {
        Self {
            status: BAD_INPUT,
            code,
            error,
        }
    }

    /// The identity key or certificate file is unreadable or corrupt: exit
    /// status 3.
    pub(crate) fn identity(error: impl ErrorCode + Send + Sync + 'static) -> Self {
        Self {
            status: BAD_IDENTITY,
            code: error.code(),
            error: error.into(),
        }
    }

    /// The failure as it is printed with `--json`.
    pub(crate) fn report(&self) -> ErrorReport {
        ErrorReport {
            code: self.code,
            message: format!("{:#}", self.error),
        }
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit {} ({}): {:#}", self.status, self.code, self.error)
    }
}
