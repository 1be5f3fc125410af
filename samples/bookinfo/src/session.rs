//! productpage's login session: the user name in a `session` cookie, signed with HMAC-SHA256
//! so it cannot be forged. The key is `SESSION_SECRET` when set (so replicas agree), else
//! random per process.

use base64::Engine;
use ring::hmac;

pub const COOKIE: &str = "session";

#[derive(Clone)]
pub struct Sessions {
    key: hmac::Key,
}

impl Sessions {
    pub fn new(secret: Option<&[u8]>) -> Self {
        let random: [u8; 32] = rand::random();
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret.unwrap_or(&random)) }
    }

    /// The cookie value for `user`.
    pub fn encode(&self, user: &str) -> String {
        let name = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(user);
        let tag = hmac::sign(&self.key, name.as_bytes());
        format!("{name}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The user a cookie value names, when its signature holds.
    pub fn decode(&self, value: &str) -> Option<String> {
        let (name, tag) = value.split_once('.')?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.key, name.as_bytes(), &tag).ok()?;
        let user = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(name).ok()?;
        String::from_utf8(user).ok().filter(|user| !user.is_empty())
    }

    /// The logged-in user of a request, from its `Cookie` headers.
    pub fn user(&self, headers: &axum::http::HeaderMap) -> Option<String> {
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|cookies| cookies.split(';'))
            .filter_map(|cookie| cookie.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .and_then(|(_, value)| self.decode(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_sessions_round_trip_and_forgeries_fail() {
        let sessions = Sessions::new(Some(b"k"));
        let cookie = sessions.encode("jason");
        assert_eq!(sessions.decode(&cookie).as_deref(), Some("jason"));
        let forged = format!(
            "{}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("admin"),
            cookie.split_once('.').unwrap().1
        );
        assert_eq!(sessions.decode(&forged), None);
        assert_eq!(Sessions::new(Some(b"other")).decode(&cookie), None);
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("cookie", format!("a=b; session={cookie}").parse().unwrap());
        assert_eq!(sessions.user(&headers).as_deref(), Some("jason"));
    }
}
