//! What a row of the route table is: a [`Route`] with its [`Handler`], and the [`Params`] a
//! pattern captured. Handlers and the OpenAPI generator import these types from here; the
//! table itself ([`super::routes::ROUTES`]) imports the handlers, so nothing runs in a circle.

use std::future::Future;
use std::pin::Pin;

use hyper::Response;

use super::access::Access;
use super::error::{ApiError, Family};
use super::http::{Body, Ctx};
use super::{ApiState, Req};

/// The values a pattern's `{name}` segments captured, in pattern order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(pub(super) Vec<(&'static str, String)>);

impl Params {
    /// The captured segment `name`; patterns and handlers are declared together, so a missing
    /// name is a table bug and reads as an empty segment (which every handler refuses).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

pub type HandlerFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Response<Body>, ApiError>> + Send + 'a>>;

/// A handler: the request with its context and captured path segments in, a response out.
pub type Handler = for<'a> fn(&'a ApiState, &'a Ctx, &'a Req, &'a Params) -> HandlerFuture<'a>;

/// One endpoint.
pub struct Route {
    /// `GET` routes answer `HEAD` too.
    pub methods: &'static [&'static str],
    /// Literal segments and `{name}` captures: `/toggle/{n}`.
    pub pattern: &'static str,
    pub family: Family,
    pub access: Access,
    pub handler: Handler,
    /// One line for people (the index, later the OpenAPI document).
    pub summary: &'static str,
    /// A path two seeds share: a caller whose only credential is seed 003's session cookie
    /// is answered in this family by this handler instead (see [`Shared`]).
    pub session: Option<Shared>,
    /// A WebSocket route: `?token=` counts as a bearer token here, and only here.
    pub websocket: bool,
}

/// The seed-003 side of a shared path (`/api/admin/users`): the family follows how the caller
/// authenticated, decided here in the table, not in handlers.
pub struct Shared {
    pub family: Family,
    pub handler: Handler,
}

impl Route {
    /// The family and handler for a caller with these credentials.
    pub fn for_caller(&self, creds: &super::access::Credentials) -> (Family, Handler) {
        match &self.session {
            Some(shared) if creds.family(self.family, shared.family) == shared.family => {
                (shared.family, shared.handler)
            }
            _ => (self.family, self.handler),
        }
    }
}
