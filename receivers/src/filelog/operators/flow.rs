//! Operators that decide where an entry goes: `router` and `filter`.

use std::collections::BTreeMap;

use serde::Deserialize;
use sluice_config::{Diagnostic, Node};

use super::entry::Entry;
use super::expr::{Expr, ExprString};
use super::{Common, OnError, Operator, Output, OutputIds, decode, fail, problem};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterConfig {
    /// Entries for which this holds are dropped.
    expr: String,
    /// The share of matching entries dropped (default 1.0: all).
    #[serde(default = "one")]
    drop_ratio: f64,
}

fn one() -> f64 {
    1.0
}

struct Filter {
    id: String,
    condition: Option<Expr>,
    on_error: OnError,
    expr: Expr,
    drop_ratio: f64,
    random: u64,
}

impl Filter {
    /// A uniform number in [0, 1) (xorshift: sampling needs no more).
    fn next_unit(&mut self) -> f64 {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Operator for Filter {
    fn process(&mut self, entry: Entry, out: &mut Output) {
        if let Some(condition) = &self.condition {
            match condition.eval_bool(&entry) {
                Ok(true) => {}
                Ok(false) => return out.send(0, entry),
                Err(e) => return fail(&self.id, self.on_error, &e.0, entry, out),
            }
        }
        match self.expr.eval_bool(&entry) {
            Ok(false) => out.send(0, entry),
            Ok(true) => {
                if self.drop_ratio < 1.0 && self.next_unit() >= self.drop_ratio {
                    out.send(0, entry);
                }
            }
            Err(e) => fail(&self.id, self.on_error, &e.0, entry, out),
        }
    }
}

pub(super) fn filter(
    node: &Node,
    path: &str,
    common: &mut Common,
) -> Result<Box<dyn Operator>, Vec<Diagnostic>> {
    let config: FilterConfig = decode(node, path)?;
    let expr = Expr::compile(&config.expr)
        .map_err(|e| vec![problem(node, path, "expr", e.to_string())])?;
    if !(0.0..=1.0).contains(&config.drop_ratio) {
        return Err(vec![problem(
            node,
            path,
            "drop_ratio",
            "must be between 0.0 and 1.0",
        )]);
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
        | 1;
    Ok(Box::new(Filter {
        id: common.id.clone(),
        condition: common.condition.take(),
        on_error: common.on_error,
        expr,
        drop_ratio: config.drop_ratio,
        random: seed,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteConfig {
    /// Where matching entries go.
    output: OutputIds,
    /// The condition; the first route whose condition holds takes the entry.
    expr: String,
    /// Attributes added to entries this route takes (values may embed `EXPR(...)`).
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouterConfig {
    /// The routes, tried in order.
    routes: Vec<RouteConfig>,
    /// Where entries no route takes go (dropped when absent).
    #[serde(default)]
    default: Option<OutputIds>,
}

struct Route {
    expr: Expr,
    attributes: Vec<(String, ExprString)>,
}

struct Router {
    id: String,
    routes: Vec<Route>,
}

impl Operator for Router {
    fn process(&mut self, mut entry: Entry, out: &mut Output) {
        for (i, route) in self.routes.iter().enumerate() {
            match route.expr.eval_bool(&entry) {
                Ok(true) => {
                    for (key, value) in &route.attributes {
                        match value.render(&entry) {
                            Ok(v) => {
                                entry.attributes.insert(key.clone(), v);
                            }
                            Err(e) => return fail(&self.id, OnError::Send, &e.0, entry, out),
                        }
                    }
                    return out.send(i, entry);
                }
                Ok(false) => {}
                Err(e) => {
                    // A route that cannot be evaluated does not take the entry.
                    tracing::debug!(operator = %self.id, error = %e, "router expression failed");
                }
            }
        }
        out.send(self.routes.len(), entry);
    }
}

pub(super) fn router(
    node: &Node,
    path: &str,
    common: &mut Common,
) -> Result<Box<dyn Operator>, Vec<Diagnostic>> {
    let config: RouterConfig = decode(node, path)?;
    let mut errors = Vec::new();
    let mut routes = Vec::new();
    for (i, route) in config.routes.into_iter().enumerate() {
        let at = format!("{path}.routes[{i}]");
        let route_node = node
            .get("routes")
            .and_then(Node::as_seq)
            .and_then(|s| s.get(i))
            .unwrap_or(node);
        let expr = match Expr::compile(&route.expr) {
            Ok(e) => Some(e),
            Err(e) => {
                errors.push(problem(route_node, &at, "expr", e.to_string()));
                None
            }
        };
        let mut attributes = Vec::new();
        for (key, value) in route.attributes {
            match ExprString::compile(&value) {
                Ok(v) => attributes.push((key, v)),
                Err(e) => errors.push(problem(route_node, &at, "attributes", e.to_string())),
            }
        }
        if let Some(expr) = expr {
            routes.push(Route { expr, attributes });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(Router {
        id: common.id.clone(),
        routes,
    }))
}

/// The output ids of each port of a router: its routes, then `default` (empty: dropped).
pub(super) fn router_ports(node: &Node) -> Vec<Vec<String>> {
    let Ok(config) = decode::<RouterConfig>(node, "") else {
        return Vec::new();
    };
    let mut ports: Vec<Vec<String>> = config.routes.into_iter().map(|r| r.output.0).collect();
    ports.push(config.default.map(|d| d.0).unwrap_or_default());
    ports
}
