//! The two routes every search client calls for each query — `POST
//! /collections/{name}/points/search` and `POST /collections/{name}/points/query` — served
//! without the router.
//!
//! Through axum's router a request pays for the route match, the matched-path and path-parameter
//! extensions, a cloned boxed route service, boxed futures and the extractors: ~4k instructions
//! and ~11 allocations a request (callgrind, against a 10-point collection). This layer sits
//! inside the [`super::gate`] and the body limit, so the hot routes keep the same key check,
//! limits, metrics, access line and body limit; it runs the same handler code ([`super::search`])
//! and gives the router everything else, including any path it would have to percent-decode.

use super::search::{self, HotRoute};
use super::AppState;
use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower::Service;

/// The router behind, with the hot routes taken off its hands.
#[derive(Clone)]
pub struct HotRoutes<S> {
    inner: S,
    db: AppState,
}

impl<S> HotRoutes<S> {
    pub fn new(db: AppState, inner: S) -> Self {
        HotRoutes { inner, db }
    }
}

impl<S> Service<Request> for HotRoutes<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    // The router's future boxed too: inline, its size would be every hot request's to carry
    // and copy through the layers outside.
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match hot_route(req.method(), req.uri().path()) {
            Some((route, name)) => {
                let hot = search::hot(self.db.clone(), route, name.to_owned(), req);
                Box::pin(hot.map(|answer| Ok(answer.into_response())))
            }
            None => Box::pin(self.inner.call(req)),
        }
    }
}

/// The hot route and collection name of a request, if it is one; `None` sends it to the router.
fn hot_route<'a>(method: &Method, path: &'a str) -> Option<(HotRoute, &'a str)> {
    if method != Method::POST {
        return None;
    }
    let rest = path.strip_prefix("/collections/")?;
    let (name, route) = if let Some(name) = rest.strip_suffix("/points/search") {
        (name, HotRoute::Search)
    } else {
        (rest.strip_suffix("/points/query")?, HotRoute::Query)
    };
    // A name to percent-decode, or no single segment at all, is the router's to judge.
    let plain = !name.is_empty() && !name.bytes().any(|b| b == b'/' || b == b'%');
    plain.then_some((route, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_posts_to_the_two_routes_are_hot() {
        let post = Method::POST;
        assert!(matches!(
            hot_route(&post, "/collections/c1/points/search"),
            Some((HotRoute::Search, "c1"))
        ));
        assert!(matches!(
            hot_route(&post, "/collections/my-coll/points/query"),
            Some((HotRoute::Query, "my-coll"))
        ));
        for path in [
            "/collections/c1/points/search/batch",
            "/collections/c1/points/query/batch",
            "/collections//points/search",
            "/collections/a/b/points/search",
            "/collections/caf%C3%A9/points/search",
            "/collections/c1/points/scroll",
            "/collections/c1/points/search/",
            "/collections/points/search",
        ] {
            assert!(hot_route(&post, path).is_none(), "{path}");
        }
        assert!(hot_route(&Method::GET, "/collections/c1/points/search").is_none());
    }
}
