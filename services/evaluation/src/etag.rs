//! `If-None-Match` on an actix request, against the tags of the contract (`vexil_protocol::etag`:
//! polled snapshots and OFREP bulk evaluations).

use actix_web::HttpRequest;
use actix_web::http::header;

/// Whether the request's `If-None-Match` names `etag` (weak or strong, alone or in a list; `*` is not
/// honoured), as `vexil_protocol::etag::if_none_match` decides.
pub fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    let values = req.headers().get_all(header::IF_NONE_MATCH).filter_map(|value| value.to_str().ok());
    vexil_protocol::etag::if_none_match(values, etag)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn every_if_none_match_header_is_read() {
        let req = TestRequest::default()
            .insert_header(("If-None-Match", "\"1\", W/\"7\""))
            .append_header(("If-None-Match", "\"9\""))
            .to_http_request();
        assert!(if_none_match(&req, "\"7\""));
        assert!(if_none_match(&req, "\"9\""));
        assert!(!if_none_match(&req, "\"8\""));
        assert!(!if_none_match(&TestRequest::default().to_http_request(), "\"7\""));
    }
}
