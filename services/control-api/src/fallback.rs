//! What answers a request no route took: `405 Method Not Allowed` (with `Allow`) when the path is a
//! management route that takes other methods, else `404 Not Found`. The routes and their methods come
//! from the OpenAPI document, so the answer can never disagree with what the API documents.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use vexil_http::error::{ApiError, ErrorCode};

/// Every documented path, as segments (`None` for a `{parameter}`), with the methods it takes.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<(Vec<Option<String>>, Vec<&'static str>)>,
}

impl RouteTable {
    /// The table of an OpenAPI document's paths.
    pub fn from_openapi(openapi: &utoipa::openapi::OpenApi) -> RouteTable {
        let routes = openapi
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = path
                    .trim_matches('/')
                    .split('/')
                    .map(|segment| (!segment.starts_with('{')).then(|| segment.to_owned()))
                    .collect();
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(method, present)| present.then_some(method))
                .collect();
                (segments, methods)
            })
            .collect();
        RouteTable { routes }
    }

    /// The methods `path` takes, if it is a documented route (a request path, no query).
    pub fn methods(&self, path: &str) -> Option<Vec<&'static str>> {
        let requested: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut methods: Vec<&'static str> = self
            .routes
            .iter()
            .filter(|(segments, _)| {
                segments.len() == requested.len()
                    && segments.iter().zip(&requested).all(|(segment, requested)| match segment {
                        Some(literal) => literal == requested,
                        None => !requested.is_empty(),
                    })
            })
            .flat_map(|(_, methods)| methods.iter().copied())
            .collect();
        methods.dedup();
        (!methods.is_empty()).then_some(methods)
    }
}

/// The app's default service: problem+json 405 (with `Allow`) or 404.
pub async fn not_found(req: HttpRequest, routes: Option<web::Data<RouteTable>>) -> HttpResponse {
    let allowed = routes.and_then(|routes| routes.methods(req.path()));
    match allowed {
        Some(methods) => {
            let error = ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{} does not take {}; it takes {}", req.path(), req.method(), methods.join(", ")),
            );
            let mut response = error.error_response();
            if let Ok(value) = header::HeaderValue::from_str(&methods.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
        None => {
            ApiError::new(ErrorCode::NotFound, "no such route; the API is described at /api/v1/openapi.json")
                .error_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documented_path_with_parameters_lists_its_methods_and_others_are_unknown() {
        let table = RouteTable::from_openapi(&crate::openapi());
        assert_eq!(
            table.methods("/api/v1/projects/shop/flags/checkout"),
            Some(vec!["GET", "PATCH", "DELETE"])
        );
        assert_eq!(table.methods("/api/v1/projects"), Some(vec!["GET", "POST"]));
        assert_eq!(table.methods("/api/v1/audit/verify"), Some(vec!["GET"]));
        assert_eq!(table.methods("/api/v1/projects/shop/nothing"), None);
        assert_eq!(table.methods("/api/v1/projects//flags/x"), None);
    }
}
