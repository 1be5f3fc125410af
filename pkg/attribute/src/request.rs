//! A request's path as 1.4's proxies described it to Mixer: `request.path` whole,
//! `request.url_path` without the query, and `request.query_params` from `a=1&b` (a parameter
//! without a value maps to `""`). The built-in proxy, Mixer's ext_authz mapping and its access
//! log mapping all describe paths this way.

use std::borrow::Cow;

use crate::{MapBag, StringMap, Value};

/// Sets `request.path`, `request.url_path` and `request.query_params` for `path`.
pub fn set_path(bag: &mut MapBag, path: &str) {
    let (url_path, query) = path.split_once('?').unwrap_or((path, ""));
    let params: StringMap = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key.to_string(), value.to_string())
        })
        .collect();
    bag.set("request.path", Value::String(Cow::Owned(path.to_string())));
    bag.set("request.url_path", Value::String(Cow::Owned(url_path.to_string())));
    bag.set("request.query_params", Value::StringMap(Cow::Owned(params)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_split_off_and_into_parameters() {
        let mut bag = MapBag::new();
        set_path(&mut bag, "/productpage?u=normal&flag&=x");
        assert_eq!(bag.get_value("request.url_path").and_then(Value::as_str), Some("/productpage"));
        assert_eq!(bag.get_value("request.path").and_then(Value::as_str), Some("/productpage?u=normal&flag&=x"));
        let Some(Value::StringMap(params)) = bag.get_value("request.query_params") else { panic!("params") };
        assert_eq!((params["u"].as_str(), params["flag"].as_str(), params[""].as_str()), ("normal", "", "x"));
    }
}
