//! The management API's errors: the problem+json table of `vexil-http`, and what a store error means to
//! an API client — decided here, because the store knows nothing of HTTP and `vexil-http` nothing of
//! the store.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
pub use vexil_http::error::{ApiError, ErrorCode, Problem};
use vexil_model::ValidationErrors;
use vexil_store::StoreError;

/// What a management handler fails with: an [`ApiError`]. `?` turns a store error into one
/// ([`from_store`]), and validation errors and unexpected (`anyhow`) errors too.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HandlerError(#[from] ApiError);

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> HandlerError {
        HandlerError(from_store(error))
    }
}

impl From<anyhow::Error> for HandlerError {
    fn from(error: anyhow::Error) -> HandlerError {
        HandlerError(ApiError::Unexpected(error))
    }
}

impl From<ValidationErrors> for HandlerError {
    fn from(errors: ValidationErrors) -> HandlerError {
        HandlerError(errors.into())
    }
}

impl ResponseError for HandlerError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        self.0.error_response()
    }
}

/// The API error a store error is answered with: the store's own words for a missing or duplicate
/// item, a version mismatch (`412`), an invalid or conflicting change; `503` when the database cannot
/// be reached (nothing was written); anything else is unexpected (`500`, logged with its causes).
pub fn from_store(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound { .. } => ApiError::new(ErrorCode::NotFound, error.to_string()),
        StoreError::AlreadyExists { .. } => ApiError::new(ErrorCode::AlreadyExists, error.to_string()),
        StoreError::VersionMismatch { .. } => ApiError::new(ErrorCode::PreconditionFailed, error.to_string()),
        StoreError::Invalid(errors) => errors.into(),
        StoreError::Conflict(detail) => ApiError::new(ErrorCode::Conflict, detail),
        StoreError::Unavailable(_) => {
            tracing::warn!(error = %anyhow::Error::from(error), "database unavailable");
            ApiError::new(ErrorCode::ServiceUnavailable, "the database is unavailable; nothing was changed")
        }
        other => ApiError::Unexpected(anyhow::Error::from(other)),
    }
}
