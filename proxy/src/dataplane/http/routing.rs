//! Route selection: the manager's route table (inline, or the RDS table of its name), the
//! virtual host for the request's authority, and the first route whose match accepts the
//! original path and headers.

use std::sync::Arc;

use http::request::Parts;

use super::super::config::listener::{HttpManagerConfig, RouteSource};
use super::super::config::route::{Route, RouteTable, VirtualHost};
use super::super::context::TrafficContext;
use super::exchange::Exchange;

/// The route a request takes, with the levels its header edits and filters come from.
pub(crate) struct Selected<'a> {
    pub table: &'a RouteTable,
    pub host: &'a VirtualHost,
    pub route: &'a Route,
}

/// The route table the manager uses, if it has arrived.
pub(crate) fn route_table(context: &TrafficContext, manager: &HttpManagerConfig) -> Option<Arc<RouteTable>> {
    match &manager.routes {
        RouteSource::Inline(table) => Some(table.clone()),
        RouteSource::Rds(name) => context.routes.load().get(name).cloned(),
    }
}

/// The route of `table` the request takes, if any.
pub(crate) fn select<'a>(table: &'a RouteTable, exchange: &Exchange, parts: &Parts) -> Option<Selected<'a>> {
    let host = table.virtual_host(&exchange.authority)?;
    let route = host
        .routes
        .iter()
        .find(|route| route.matcher.matches(&exchange.original_path, |name| exchange.header_value(parts, name)))?;
    Some(Selected { table, host, route })
}
