//! A command's failure: the message to print and the sysexits code, from whichever layer
//! failed. Both the CLI and the daemon return it, so neither imports the other for it.

use crate::config::ConfigError;
use crate::control::client::ClientError;
use crate::engine::EngineError;
use crate::exit;

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// sysexits code.
    pub code: u8,
    /// One or more lines.
    pub message: String,
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::new(e.exit_code(), e.to_string())
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::new(exit::CONFIG, e.to_string())
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Remote { body } => Failure::new(body.exit, body.error),
            e => Failure::new(exit::UNAVAILABLE, e.to_string()),
        }
    }
}
