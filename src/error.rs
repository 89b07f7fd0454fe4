//! The one error type that crosses layers. Each variant maps to the HTTP status Qdrant uses for
//! that kind of failure; the message is what the client reads, so it names what was wrong.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request is well-formed JSON but asks for something invalid.
    #[error("Wrong input: {0}")]
    BadRequest(String),
    /// 404: a collection or point that does not exist.
    #[error("Not found: {0}")]
    NotFound(String),
    /// 409: conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// 503: the node (or a shard it needs) cannot serve right now.
    #[error("Service unavailable: {0}")]
    Unavailable(String),
    /// 504: the request overran its deadline and was stopped.
    #[error("Timeout: {0}")]
    Timeout(String),
    /// 500: storage or an invariant failed; logged, never caused by request contents.
    #[error("Service internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Internal(format!("{e:#}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(e.to_string())
    }
}

/// What a caught panic says: its message when it carries one (`panic!` with text or a format).
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic")
}
