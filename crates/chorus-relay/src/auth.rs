//! Access tokens: HMAC-signed JSON Web Tokens (HS256) that grant one [`Right`] on one
//! document, or on every document whose id starts with a prefix, until a time.
//!
//! The relay and whoever hands out tokens share a secret (at least
//! [`MIN_SECRET_BYTES`] bytes); there is no token store and no revocation, so tokens
//! should be short-lived. `chorus token` mints them from the command line.
//!
//! ```
//! use chorus_relay::auth::{self, AuthError, Claims, Right};
//!
//! let secret = b"a secret of at least sixteen bytes";
//! let claims = Claims::for_doc("notes", Right::Write, 1_000);
//! let token = auth::mint(secret, &claims);
//!
//! assert_eq!(auth::verify(secret, &token, "notes", 999).unwrap(), claims);
//! let err = auth::verify(secret, &token, "other", 999).unwrap_err();
//! assert!(matches!(err, AuthError::WrongDocument { .. }));
//! let err = auth::verify(secret, &token, "notes", 2_000).unwrap_err();
//! assert!(matches!(err, AuthError::Expired));
//! // The relay then checks what the connection does against the right.
//! assert!(claims.require(Right::Read).is_ok());
//! assert!(claims.require(Right::Relay).is_err());
//! ```
//!
//! Time is passed in (`now_unix`), never read here, so verification is deterministic.
//! Only HS256 is accepted: a token whose header names another algorithm — `none`
//! included — is refused before its signature is looked at.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The shortest shared secret the relay and `chorus token` accept. HMAC-SHA-256 takes
/// keys of any length, but a short one can be guessed offline from a single token.
pub const MIN_SECRET_BYTES: usize = 16;

/// How long after its `exp` a token is still accepted, for clocks that disagree a little.
pub const LEEWAY_SECONDS: u64 = 5;

/// The longest token [`verify`] looks at. Tokens minted here are a few hundred bytes; the
/// bound keeps an attacker from making the relay decode megabytes of base64 and JSON.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// What a token lets its bearer do. Each right includes the ones before it:
/// `Read < Write < Relay`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// Receive the document and its updates.
    Read,
    /// Read, and send changes made by the connecting replica.
    Write,
    /// Another relay's federation link: read, write, and forward ops of any replica.
    Relay,
}

impl Right {
    /// Every right, weakest first.
    pub const ALL: [Right; 3] = [Right::Read, Right::Write, Right::Relay];

    /// Whether holding `self` grants `needed` too.
    pub fn includes(self, needed: Right) -> bool {
        self >= needed
    }

    /// The name used in tokens and on the command line: `read`, `write` or `relay`.
    pub fn as_str(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
            Right::Relay => "relay",
        }
    }
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payload of a token. Exactly one of `doc` and `prefix` is set; [`verify`] refuses
/// a token with both or neither, even when its signature is good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The one document the token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// The token is for every document whose id starts with this (`""`: every document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// What the bearer may do.
    pub right: Right,
    /// When the token expires, in seconds since the Unix epoch.
    pub exp: u64,
}

impl Claims {
    /// Claims for one document.
    pub fn for_doc(doc: impl Into<String>, right: Right, exp: u64) -> Self {
        Claims {
            doc: Some(doc.into()),
            prefix: None,
            right,
            exp,
        }
    }

    /// Claims for every document whose id starts with `prefix`.
    pub fn for_prefix(prefix: impl Into<String>, right: Right, exp: u64) -> Self {
        Claims {
            doc: None,
            prefix: Some(prefix.into()),
            right,
            exp,
        }
    }

    /// Whether the claims name exactly one of a document and a prefix, and that one
    /// matches `doc` (the document equal, or its id starting with the prefix).
    pub fn covers(&self, doc: &str) -> bool {
        match (&self.doc, &self.prefix) {
            (Some(d), None) => d == doc,
            (None, Some(p)) => doc.starts_with(p.as_str()),
            _ => false,
        }
    }

    /// Refuses a right the claims do not include, e.g. a change sent over a read-only
    /// connection.
    pub fn require(&self, needed: Right) -> Result<(), AuthError> {
        if self.right.includes(needed) {
            Ok(())
        } else {
            Err(AuthError::InsufficientRight {
                needed,
                granted: self.right,
            })
        }
    }

    /// Refuses claims that name both a document and a prefix, or neither.
    fn check_scope(&self) -> Result<(), AuthError> {
        match (&self.doc, &self.prefix) {
            (Some(_), Some(_)) => Err(AuthError::BothDocAndPrefix),
            (None, None) => Err(AuthError::NoDocOrPrefix),
            _ => Ok(()),
        }
    }
}

/// Signs `claims` with `secret` (HS256) into a compact JWT.
///
/// It does not check the claims: [`verify`] refuses a token naming both or neither of a
/// document and a prefix, so mint through [`Claims::for_doc`] or [`Claims::for_prefix`].
pub fn mint(secret: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    // Serializing these claims cannot fail, and HMAC takes keys of any length.
    .expect("HS256 signing of plain claims cannot fail")
}

/// Checks `token` for the document `doc` at time `now_unix` (seconds since the Unix
/// epoch) and returns its claims.
///
/// It refuses, in this order: an empty token, one that is not a JWT, one signed with
/// another algorithm than HS256 (`none` included), one whose signature `secret` does not
/// produce, one with malformed claims, one naming both or neither of a document and a
/// prefix, one that expired more than [`LEEWAY_SECONDS`] ago, and one that does not
/// cover `doc`. It never panics, whatever the string.
///
/// The caller still checks the [`Right`] it needs, with [`Claims::require`].
pub fn verify(secret: &[u8], token: &str, doc: &str, now_unix: u64) -> Result<Claims, AuthError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed(format!(
            "it is {} bytes long, more than the {MAX_TOKEN_BYTES} a token may have",
            token.len()
        )));
    }
    let alg = header_alg(token)?;
    if alg != "HS256" {
        return Err(AuthError::UnsupportedAlgorithm(shorten(&alg)));
    }

    let mut validation = Validation::new(Algorithm::HS256);
    // Expiry is checked below against the time passed in, not the system clock.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let data =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
            .map_err(from_jwt_error)?;
    let claims = data.claims;

    claims.check_scope()?;
    if now_unix >= claims.exp.saturating_add(LEEWAY_SECONDS) {
        return Err(AuthError::Expired);
    }
    if !claims.covers(doc) {
        return Err(AuthError::WrongDocument { doc: shorten(doc) });
    }
    Ok(claims)
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was given.
    #[error(
        "no access token given: this relay requires one; mint it with `chorus token` and \
         present it with the request"
    )]
    Missing,
    /// The token is not a well-formed JWT with our claims.
    #[error("the access token is malformed ({0}): pass it exactly as `chorus token` printed it")]
    Malformed(String),
    /// The token's header names an algorithm other than HS256.
    #[error(
        "the access token is signed with algorithm {0:?}, but this relay accepts only \
         HS256: mint one with `chorus token`"
    )]
    UnsupportedAlgorithm(String),
    /// The signature does not match: another secret signed it, or it was altered.
    #[error(
        "the access token's signature does not match: it was signed with another secret \
         or altered; mint a new one with this relay's secret"
    )]
    BadSignature,
    /// The token's `exp` has passed.
    #[error("the access token has expired: mint a new one")]
    Expired,
    /// The token is valid, but for other documents.
    #[error(
        "the access token does not cover document {doc:?}: mint one for this document \
         (`chorus token --doc`) or a prefix of its id (`chorus token --prefix`)"
    )]
    WrongDocument {
        /// The document the token was presented for.
        doc: String,
    },
    /// The token names both a document and a prefix.
    #[error(
        "the access token names both a document and a prefix: mint one with either \
         `--doc` or `--prefix`"
    )]
    BothDocAndPrefix,
    /// The token names neither a document nor a prefix.
    #[error(
        "the access token names neither a document nor a prefix: mint one with `--doc` \
         or `--prefix`"
    )]
    NoDocOrPrefix,
    /// The token does not grant what the connection tried to do.
    #[error(
        "the access token grants {granted}, but this needs {needed}: mint one with \
         `--right {needed}`"
    )]
    InsufficientRight {
        /// The right the action needs.
        needed: Right,
        /// The right the token grants.
        granted: Right,
    },
}

impl AuthError {
    /// A short, stable name for the kind of refusal, for metric labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::WrongDocument { .. } => "wrong_document",
            AuthError::BothDocAndPrefix => "both_doc_and_prefix",
            AuthError::NoDocOrPrefix => "no_doc_or_prefix",
            AuthError::InsufficientRight { .. } => "insufficient_right",
        }
    }
}

/// Reads the `alg` of the token's header without trusting anything else in it, so an
/// algorithm this crate does not know (like `none`) gets a clear refusal.
fn header_alg(token: &str) -> Result<String, AuthError> {
    let parts = token.split('.').count();
    if parts != 3 {
        return Err(AuthError::Malformed(format!(
            "a token has three parts separated by dots; this one has {parts}"
        )));
    }
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64url_decode(header)
        .ok_or_else(|| AuthError::Malformed("its header is not base64url".to_owned()))?;
    #[derive(Deserialize)]
    struct AlgOnly {
        alg: String,
    }
    serde_json::from_slice::<AlgOnly>(&bytes)
        .map(|h| h.alg)
        .map_err(|_| AuthError::Malformed("its header is not JSON naming an `alg`".to_owned()))
}

/// Decodes unpadded base64url. Lenient about stray trailing bits: it only serves
/// [`header_alg`]'s diagnosis, and jsonwebtoken decodes strictly afterwards.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn from_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm => AuthError::UnsupportedAlgorithm("not HS256".to_owned()),
        ErrorKind::Base64(_) => {
            AuthError::Malformed("its payload or signature is not base64url".to_owned())
        }
        ErrorKind::Utf8(_) => AuthError::Malformed("its payload is not UTF-8".to_owned()),
        ErrorKind::Json(e) => AuthError::Malformed(format!("its claims are invalid: {e}")),
        _ => AuthError::Malformed(e.to_string()),
    }
}

/// Bounds text that came from the request before it goes into an error message.
fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let end = (0..=MAX)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef-test-secret";
    const NOW: u64 = 1_700_000_000;

    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    fn token_with(header: &str, payload: &str, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            b64(header.as_bytes()),
            b64(payload.as_bytes())
        )
    }

    #[test]
    fn base64_helpers_agree() {
        for s in ["", "a", "ab", "abc", "abcd", "{\"alg\":\"none\"}"] {
            assert_eq!(base64url_decode(&b64(s.as_bytes())).unwrap(), s.as_bytes());
        }
    }

    #[test]
    fn round_trip() {
        for right in Right::ALL {
            let claims = Claims::for_doc("notes", right, NOW + 60);
            let token = mint(SECRET, &claims);
            assert_eq!(verify(SECRET, &token, "notes", NOW).unwrap(), claims);
        }
        let claims = Claims::for_prefix("team/", Right::Read, NOW + 60);
        let token = mint(SECRET, &claims);
        assert_eq!(verify(SECRET, &token, "team/a", NOW).unwrap(), claims);
        // Surrounding whitespace (a pasted line) is forgiven.
        assert!(verify(SECRET, &format!(" {token}\n"), "team/a", NOW).is_ok());
    }

    #[test]
    fn the_payload_is_plain_json() {
        let token = mint(SECRET, &Claims::for_doc("d", Right::Relay, 7));
        let payload = token.split('.').nth(1).unwrap();
        let json = String::from_utf8(base64url_decode(payload).unwrap()).unwrap();
        assert_eq!(json, r#"{"doc":"d","right":"relay","exp":7}"#);
    }

    #[test]
    fn wrong_secret() {
        let token = mint(SECRET, &Claims::for_doc("notes", Right::Write, NOW + 60));
        let err = verify(b"another secret, 16+ bytes", &token, "notes", NOW).unwrap_err();
        assert!(matches!(err, AuthError::BadSignature), "{err:?}");
        assert_eq!(err.reason(), "bad_signature");
    }

    #[test]
    fn expired() {
        let token = mint(SECRET, &Claims::for_doc("notes", Right::Write, NOW));
        assert!(verify(SECRET, &token, "notes", NOW - 1).is_ok());
        assert!(verify(SECRET, &token, "notes", NOW + LEEWAY_SECONDS - 1).is_ok());
        for now in [NOW + LEEWAY_SECONDS, NOW + 3600, u64::MAX] {
            let err = verify(SECRET, &token, "notes", now).unwrap_err();
            assert!(matches!(err, AuthError::Expired), "{err:?}");
        }
        // A far-future expiry does not overflow.
        let token = mint(SECRET, &Claims::for_doc("notes", Right::Read, u64::MAX));
        assert!(verify(SECRET, &token, "notes", u64::MAX - 1).is_ok());
    }

    #[test]
    fn document_and_prefix_coverage() {
        let doc = Claims::for_doc("notes", Right::Read, NOW + 60);
        assert!(doc.covers("notes"));
        assert!(!doc.covers("notes2") && !doc.covers("note") && !doc.covers(""));

        let prefix = Claims::for_prefix("team/", Right::Read, NOW + 60);
        assert!(prefix.covers("team/") && prefix.covers("team/notes"));
        assert!(!prefix.covers("team") && !prefix.covers("other/team/x"));
        assert!(Claims::for_prefix("", Right::Read, 0).covers("anything"));

        let token = mint(SECRET, &prefix);
        let err = verify(SECRET, &token, "teams/x", NOW).unwrap_err();
        assert!(
            matches!(&err, AuthError::WrongDocument { doc } if doc == "teams/x"),
            "{err:?}"
        );
        let token = mint(SECRET, &doc);
        let err = verify(SECRET, &token, "other", NOW).unwrap_err();
        assert!(matches!(err, AuthError::WrongDocument { .. }), "{err:?}");
    }

    #[test]
    fn scope_must_be_exactly_one() {
        let both = Claims {
            doc: Some("a".into()),
            prefix: Some("a".into()),
            right: Right::Write,
            exp: NOW + 60,
        };
        assert!(!both.covers("a"));
        let err = verify(SECRET, &mint(SECRET, &both), "a", NOW).unwrap_err();
        assert!(matches!(err, AuthError::BothDocAndPrefix), "{err:?}");

        let neither = Claims {
            doc: None,
            prefix: None,
            ..both
        };
        assert!(!neither.covers("a"));
        let err = verify(SECRET, &mint(SECRET, &neither), "a", NOW).unwrap_err();
        assert!(matches!(err, AuthError::NoDocOrPrefix), "{err:?}");
    }

    #[test]
    fn rights_include_weaker_ones() {
        let claims = Claims::for_doc("d", Right::Write, 0);
        assert!(claims.require(Right::Read).is_ok());
        assert!(claims.require(Right::Write).is_ok());
        let err = claims.require(Right::Relay).unwrap_err();
        assert!(err.to_string().contains("--right relay"), "{err}");
        assert!(Right::Relay.includes(Right::Write));
        assert!(!Right::Read.includes(Right::Write));
    }

    #[test]
    fn tampered_payload() {
        let token = mint(SECRET, &Claims::for_doc("notes", Right::Read, NOW + 60));
        let parts: Vec<&str> = token.split('.').collect();
        // The same signature over a payload granting more.
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(br#"{"doc":"notes","right":"write","exp":1700000060}"#),
            parts[2]
        );
        let err = verify(SECRET, &forged, "notes", NOW).unwrap_err();
        assert!(matches!(err, AuthError::BadSignature), "{err:?}");
        // A flipped character anywhere in the signature.
        let mut sig = parts[2].as_bytes().to_vec();
        sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        );
        let err = verify(SECRET, &forged, "notes", NOW).unwrap_err();
        assert!(matches!(err, AuthError::BadSignature), "{err:?}");
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let payload = r#"{"doc":"notes","right":"relay","exp":1800000000}"#;
        for (header, signature) in [
            (r#"{"alg":"none","typ":"JWT"}"#, ""),
            (r#"{"alg":"None"}"#, ""),
            (r#"{"alg":"HS512","typ":"JWT"}"#, "c2ln"),
            (r#"{"alg":"RS256","typ":"JWT"}"#, "c2ln"),
        ] {
            let token = token_with(header, payload, signature);
            let err = verify(SECRET, &token, "notes", NOW).unwrap_err();
            assert!(
                matches!(err, AuthError::UnsupportedAlgorithm(_)),
                "{header}: {err:?}"
            );
            assert!(err.to_string().contains("HS256"));
        }
        // An HS384 token really signed with the secret is refused too.
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &Claims::for_doc("notes", Right::Read, NOW + 60),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let err = verify(SECRET, &token, "notes", NOW).unwrap_err();
        assert!(matches!(err, AuthError::UnsupportedAlgorithm(_)), "{err:?}");
    }

    #[test]
    fn malformed_claims_with_a_good_signature() {
        #[derive(Serialize)]
        struct Odd {
            doc: &'static str,
            right: &'static str,
            exp: i64,
        }
        for claims in [
            Odd {
                doc: "d",
                right: "admin",
                exp: NOW as i64 + 60,
            },
            Odd {
                doc: "d",
                right: "read",
                exp: -1,
            },
        ] {
            let token = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap();
            let err = verify(SECRET, &token, "d", NOW).unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{err:?}");
        }
    }

    #[test]
    fn garbage_strings() {
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        let cases: &[&str] = &[
            "a",
            "a.b",
            "a.b.c",
            "a.b.c.d",
            "..",
            "...",
            "é.é.é",
            "eyJhbGciOiJIUzI1NiJ9..",
            "eyJhbGciOiJIUzI1NiJ9.!!!.sig",
            "eyJhbGciOiJIUzI1NiJ9.e30.",
            "Bearer xyz",
            &long,
        ];
        for &token in cases {
            let err = verify(SECRET, token, "d", NOW).unwrap_err();
            assert!(
                matches!(err, AuthError::Malformed(_) | AuthError::BadSignature),
                "{token:?}: {err:?}"
            );
        }
        for token in ["", "  ", "\n"] {
            assert!(matches!(
                verify(SECRET, token, "d", NOW),
                Err(AuthError::Missing)
            ));
        }
    }

    #[test]
    fn messages_bound_what_came_from_the_request() {
        let token = mint(SECRET, &Claims::for_doc("d", Right::Read, NOW + 60));
        let doc = "é".repeat(1000);
        let err = verify(SECRET, &token, &doc, NOW).unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics(token in "\\PC{0,300}", doc in "\\PC{0,20}", now: u64) {
            let _ = verify(SECRET, &token, &doc, now);
        }

        #[test]
        fn verify_never_panics_on_jwt_shaped_strings(
            header in "[A-Za-z0-9_=+/-]{0,40}",
            payload in "[A-Za-z0-9_=+/-]{0,80}",
            signature in "[A-Za-z0-9_=+/-]{0,50}",
        ) {
            let _ = verify(SECRET, &format!("{header}.{payload}.{signature}"), "d", NOW);
        }

        #[test]
        fn minted_tokens_verify(doc in "\\PC{0,40}", right in 0usize..3, ttl in 0u64..1_000_000) {
            let claims = Claims::for_doc(doc.clone(), Right::ALL[right], NOW + ttl);
            let token = mint(SECRET, &claims);
            proptest::prop_assert_eq!(verify(SECRET, &token, &doc, NOW).unwrap(), claims);
        }
    }
}
