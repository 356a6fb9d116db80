//! Every error the HTTP services answer with: one table of stable codes, one `application/problem+json` shape.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;
use vexil_model::{FieldError, ValidationErrors};

/// Declares [`ErrorCode`] from its table: one row per code, with the code's HTTP status, its string in
/// JSON and its title together, so that the three can never drift apart.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => ($status:ident, $code:literal, $title:literal),)*) => {
        /// The stable error codes, with their HTTP status and title. Clients match on `code`, never on
        /// text.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
        pub enum ErrorCode {
            $($(#[$doc])* #[serde(rename = $code)] $variant,)*
        }

        impl ErrorCode {
            /// The HTTP status this code is answered with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }

            /// A short, fixed summary.
            pub fn title(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $title,)*
                }
            }

            /// The code as it appears in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    /// No token, or an unknown one.
    Unauthorized => (UNAUTHORIZED, "unauthorized", "Authentication required"),
    /// The token may not do this.
    Forbidden => (FORBIDDEN, "forbidden", "Not allowed"),
    /// A write made with a dashboard session's cookie did not carry the session's CSRF token
    /// (`X-CSRF-Token`).
    CsrfFailed => (FORBIDDEN, "csrf_failed", "Cross-site request refused"),
    /// No such resource.
    NotFound => (NOT_FOUND, "not_found", "Not found"),
    /// No such route or method.
    MethodNotAllowed => (METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed"),
    /// The body is not valid JSON or does not have the expected shape.
    InvalidBody => (BAD_REQUEST, "invalid_body", "Invalid request body"),
    /// A path or query parameter is malformed.
    InvalidParameter => (BAD_REQUEST, "invalid_parameter", "Invalid parameter"),
    /// The request is not well-formed HTTP/1.1 (answered by the streaming deployment's own server;
    /// actix answers these with an empty 400).
    MalformedRequest => (BAD_REQUEST, "malformed_request", "Malformed request"),
    /// The request's head (request line and headers) is larger than the server accepts.
    HeadersTooLarge => (REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", "Request header fields too large"),
    /// The body is well-formed but breaks a rule; `errors` names every field.
    ValidationFailed => (UNPROCESSABLE_ENTITY, "validation_failed", "Validation failed"),
    /// A resource with that key exists.
    AlreadyExists => (CONFLICT, "already_exists", "Already exists"),
    /// The change conflicts with other resources.
    Conflict => (CONFLICT, "conflict", "Conflict"),
    /// `If-Match` names a version that is no longer current.
    PreconditionFailed => (PRECONDITION_FAILED, "precondition_failed", "Precondition failed"),
    /// The body is larger than the limit.
    PayloadTooLarge => (PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large"),
    /// The body is not JSON.
    UnsupportedMediaType => (UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Unsupported media type"),
    /// The database is unreachable (nothing was written), or a data-plane replica has no data yet.
    ServiceUnavailable => (SERVICE_UNAVAILABLE, "service_unavailable", "Service unavailable"),
    /// Too many requests for this key; retry after `Retry-After` seconds.
    RateLimited => (TOO_MANY_REQUESTS, "rate_limited", "Too many requests"),
    /// A bug or an unexpected failure; the request id finds it in the logs.
    Internal => (INTERNAL_SERVER_ERROR, "internal", "Internal error"),
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
        let (detail, errors) = match self {
            ApiError::Client { detail, errors, .. } => (detail.clone(), errors.clone()),
            ApiError::RateLimited { retry_after_seconds } => {
                (format!("too many requests for this key; retry after {retry_after_seconds} s"), Vec::new())
            }
            ApiError::Unexpected(error) => {
                tracing::error!(error = format!("{error:#}"), "unexpected error");
                ("an unexpected error occurred; the request id identifies it in the logs".into(), Vec::new())
            }
        };
        let code = self.code();
        Problem {
            kind: format!("urn:vexil:problem:{}", code.as_str()),
            title: code.title(),
            status: code.status().as_u16(),
            detail,
            code,
            field: errors.first().map(|e| e.field.clone()),
            errors,
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
