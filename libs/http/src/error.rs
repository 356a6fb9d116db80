//! Every error the HTTP services answer with: one table of stable codes, one `application/problem+json` shape.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;
use vexil_model::{FieldError, ValidationErrors};
use vexil_store::StoreError;

/// The stable error codes, with their HTTP status and title. Clients match on `code`, never on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No token, or an unknown one.
    Unauthorized,
    /// The token may not do this.
    Forbidden,
    /// No such resource.
    NotFound,
    /// No such route or method.
    MethodNotAllowed,
    /// The body is not valid JSON or does not have the expected shape.
    InvalidBody,
    /// A path or query parameter is malformed.
    InvalidParameter,
    /// The request is not well-formed HTTP/1.1 (answered by the streaming deployment's own server;
    /// actix answers these with an empty 400).
    MalformedRequest,
    /// The request's head (request line and headers) is larger than the server accepts.
    HeadersTooLarge,
    /// The body is well-formed but breaks a rule; `errors` names every field.
    ValidationFailed,
    /// A resource with that key exists.
    AlreadyExists,
    /// The change conflicts with other resources.
    Conflict,
    /// `If-Match` names a version that is no longer current.
    PreconditionFailed,
    /// The body is larger than the limit.
    PayloadTooLarge,
    /// The body is not JSON.
    UnsupportedMediaType,
    /// The database is unreachable (nothing was written), or a data-plane replica has no data yet.
    ServiceUnavailable,
    /// Too many requests for this key; retry after `Retry-After` seconds.
    RateLimited,
    /// A bug or an unexpected failure; the request id finds it in the logs.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::InvalidBody | ErrorCode::InvalidParameter | ErrorCode::MalformedRequest => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::AlreadyExists | ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, fixed summary.
    pub fn title(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "Authentication required",
            ErrorCode::Forbidden => "Not allowed",
            ErrorCode::NotFound => "Not found",
            ErrorCode::MethodNotAllowed => "Method not allowed",
            ErrorCode::InvalidBody => "Invalid request body",
            ErrorCode::InvalidParameter => "Invalid parameter",
            ErrorCode::MalformedRequest => "Malformed request",
            ErrorCode::HeadersTooLarge => "Request header fields too large",
            ErrorCode::ValidationFailed => "Validation failed",
            ErrorCode::AlreadyExists => "Already exists",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::PreconditionFailed => "Precondition failed",
            ErrorCode::PayloadTooLarge => "Payload too large",
            ErrorCode::UnsupportedMediaType => "Unsupported media type",
            ErrorCode::ServiceUnavailable => "Service unavailable",
            ErrorCode::RateLimited => "Too many requests",
            ErrorCode::Internal => "Internal error",
        }
    }

    /// The code as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The `Content-Type` of every error body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem document, as every error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:vexil:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The code's fixed title.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// The stable machine code.
    pub code: ErrorCode,
    /// The first offending field (path into the body, or a parameter name), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every offending field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// What a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A user-facing error: the code, a detail, and the offending fields.
    #[error("{detail}")]
    Client {
        /// The stable code.
        code: ErrorCode,
        /// What went wrong, for a person.
        detail: String,
        /// The offending fields.
        errors: Vec<FieldError>,
    },
    /// Too many requests: answered 429 with `Retry-After` in whole seconds (the only form every
    /// client parses).
    #[error("too many requests; retry after {retry_after_seconds} s")]
    RateLimited {
        /// Seconds until a retry may succeed.
        retry_after_seconds: u64,
    },
    /// Anything unexpected: logged with its cause chain, answered as `internal`.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    /// An error with no field.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError::Client { code, detail: detail.into(), errors: Vec::new() }
    }

    /// An error about one field.
    pub fn field(code: ErrorCode, field: impl Into<String>, detail: impl Into<String>) -> ApiError {
        let detail = detail.into();
        ApiError::Client {
            code,
            errors: vec![FieldError { field: field.into(), message: detail.clone() }],
            detail,
        }
    }

    /// The code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Client { code, .. } => *code,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::Unexpected(_) => ErrorCode::Internal,
        }
    }

    /// The problem document this error is answered with. An unexpected error is logged here, with its
    /// cause chain (the document says only that something went wrong).
    ///
    /// [`ResponseError::error_response`] is this, [`problem_headers`](Self::problem_headers) and
    /// [`PROBLEM_CONTENT_TYPE`]; a server that is not actix answers with the same three (its body
    /// `serde_json::to_vec` of this), so that the bytes are the same.
    pub fn problem(&self) -> Problem {
        match self {
            ApiError::Client { code, detail, errors } => Problem {
                kind: format!("urn:vexil:problem:{}", code.as_str()),
                title: code.title(),
                status: code.status().as_u16(),
                detail: detail.clone(),
                code: *code,
                field: errors.first().map(|e| e.field.clone()),
                errors: errors.clone(),
            },
            ApiError::RateLimited { retry_after_seconds } => Problem {
                kind: "urn:vexil:problem:rate_limited".into(),
                title: ErrorCode::RateLimited.title(),
                status: 429,
                detail: format!("too many requests for this key; retry after {retry_after_seconds} s"),
                code: ErrorCode::RateLimited,
                field: None,
                errors: Vec::new(),
            },
            ApiError::Unexpected(error) => {
                tracing::error!(error = format!("{error:#}"), "unexpected error");
                Problem {
                    kind: "urn:vexil:problem:internal".into(),
                    title: ErrorCode::Internal.title(),
                    status: 500,
                    detail: "an unexpected error occurred; the request id identifies it in the logs".into(),
                    code: ErrorCode::Internal,
                    field: None,
                    errors: Vec::new(),
                }
            }
        }
    }

    /// The headers this error is answered with besides `Content-Type`: `WWW-Authenticate: Bearer` on a
    /// 401, `Retry-After` (whole seconds) on a 429.
    pub fn problem_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if self.code() == ErrorCode::Unauthorized {
            headers.push(("WWW-Authenticate", "Bearer".to_owned()));
        }
        if let ApiError::RateLimited { retry_after_seconds } = self {
            headers.push(("Retry-After", retry_after_seconds.to_string()));
        }
        headers
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> ApiError {
        ApiError::Client {
            code: ErrorCode::ValidationFailed,
            detail: errors.to_string(),
            errors: errors.errors().to_vec(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound { .. } => ApiError::new(ErrorCode::NotFound, error.to_string()),
            StoreError::AlreadyExists { .. } => ApiError::new(ErrorCode::AlreadyExists, error.to_string()),
            StoreError::VersionMismatch { .. } => {
                ApiError::new(ErrorCode::PreconditionFailed, error.to_string())
            }
            StoreError::Invalid(errors) => errors.into(),
            StoreError::Conflict(detail) => ApiError::new(ErrorCode::Conflict, detail),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %anyhow::Error::from(error), "database unavailable");
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "the database is unavailable; nothing was changed",
                )
            }
            other => ApiError::Unexpected(anyhow::Error::from(other)),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        for header in self.problem_headers() {
            response.insert_header(header);
        }
        response.content_type(PROBLEM_CONTENT_TYPE).json(self.problem())
    }
}
