//! The one error type of the capability modules, and how it reaches a client: a GraphQL
//! error whose `extensions.code` says what kind of failure it is. Internals (SQL, pool,
//! gateway transport details) are logged, never shown.
//!
//! `AppError` deliberately does not implement `Display`: async-graphql turns any `Display`
//! type into an error without a code, so `?` on an `AppError` always goes through
//! [`From<AppError> for async_graphql::Error`] and keeps its code.

use async_graphql::ErrorExtensions;
use diesel_async::pooled_connection::deadpool::PoolError;

use crate::gateway::swiftpass::GatewayError;

/// What went wrong, in terms a client can act on.
#[derive(Debug)]
pub enum AppError {
    /// The input is invalid; nothing was changed. (`BAD_USER_INPUT`)
    BadInput(String),
    /// No valid credentials. (`UNAUTHENTICATED`)
    Unauthenticated(&'static str),
    /// Authenticated, but not allowed. (`FORBIDDEN`)
    Forbidden,
    /// The thing does not exist, or the caller may not know it exists. (`NOT_FOUND`)
    NotFound(&'static str),
    /// The request clashes with existing state. (`CONFLICT`)
    Conflict(String),
    /// A per-customer limit was reached. (`LIMIT_EXCEEDED`)
    LimitExceeded(String),
    /// A wallet holds less than the money asked of it; nothing was changed.
    /// (`INSUFFICIENT_BALANCE`)
    InsufficientBalance,
    /// The payment gateway refused the request. (`GATEWAY_REJECTED`)
    GatewayRejected {
        /// The gateway's error code.
        code: String,
        /// The gateway's message.
        message: String,
    },
    /// The payment gateway's answer is unknown; the order stays pending. (`GATEWAY_UNAVAILABLE`)
    GatewayUnavailable(String),
    /// The database is unreachable or saturated. (`UNAVAILABLE`)
    Unavailable(String),
    /// A bug or an unexpected failure. (`INTERNAL`)
    Internal(String),
}

impl AppError {
    /// The `extensions.code` clients see.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadInput(_) => "BAD_USER_INPUT",
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::Conflict(_) => "CONFLICT",
            AppError::LimitExceeded(_) => "LIMIT_EXCEEDED",
            AppError::InsufficientBalance => "INSUFFICIENT_BALANCE",
            AppError::GatewayRejected { .. } => "GATEWAY_REJECTED",
            AppError::GatewayUnavailable(_) => "GATEWAY_UNAVAILABLE",
            AppError::Unavailable(_) => "UNAVAILABLE",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    /// The message clients see.
    pub fn message(&self) -> String {
        match self {
            AppError::BadInput(m) | AppError::Conflict(m) | AppError::LimitExceeded(m) => m.clone(),
            AppError::Unauthenticated(m) => (*m).to_string(),
            AppError::Forbidden => "not allowed".into(),
            AppError::InsufficientBalance => "the balance is too low".into(),
            AppError::NotFound(what) => format!("{what} not found"),
            AppError::GatewayRejected { code, message } => {
                format!("the payment gateway refused: {message} ({code})")
            }
            AppError::GatewayUnavailable(_) => {
                "the payment gateway did not answer; the order stays pending: retry with the \
                 same idempotencyKey"
                    .into()
            }
            AppError::Unavailable(_) => "service temporarily unavailable".into(),
            AppError::Internal(_) => "internal error".into(),
        }
    }

    /// An internal error, logged where it is made.
    pub fn internal(context: impl std::fmt::Display) -> Self {
        let detail = context.to_string();
        tracing::error!(%detail, "internal error");
        AppError::Internal(detail)
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => AppError::NotFound("record"),
            other => AppError::internal(format_args!("database: {other}")),
        }
    }
}

impl From<GatewayError> for AppError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Rejected { code, message } => AppError::GatewayRejected { code, message },
            GatewayError::Unknown { reason } => AppError::GatewayUnavailable(reason),
        }
    }
}

impl From<PoolError> for AppError {
    fn from(e: PoolError) -> Self {
        tracing::warn!(error = %e, "database pool");
        AppError::Unavailable(e.to_string())
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(e: AppError) -> Self {
        let code = e.code();
        let mut err = async_graphql::Error::new(e.message());
        err = err.extend_with(|_, ext| ext.set("code", code));
        if let AppError::GatewayRejected { code, .. } = &e {
            let gateway_code = code.clone();
            err = err.extend_with(|_, ext| ext.set("gatewayCode", gateway_code));
        }
        err
    }
}

/// Results of the capability modules.
pub type AppResult<T> = Result<T, AppError>;
