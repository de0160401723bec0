//! OpenAPI 3 runtime expressions, such as `$request.body#/callbackUrl`, and
//! templates that embed them in braces, such as
//! `https://x.example/cb?id={$request.body#/id}`.
//!
//! This is a pure function of its inputs: [`parse`] turns text into an
//! [`Expression`] or a [`ParseError`] with the position and reason, and
//! [`render`] fills a template from an [`Exchange`], or names the expression
//! that has no value. Neither panics, whatever the input.
//!
//! The grammar, from the specification:
//!
//! ```text
//! expression = "$url" / "$method" / "$statusCode"
//!            / "$request." source / "$response." source
//! source     = "header." token / "query." name / "path." name
//!            / "body" [ "#" json-pointer ]
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Where a value comes from: the subscription request or its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `$request.…`
    Request,
    /// `$response.…`
    Response,
}

/// A parsed runtime expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    /// `$url`: the full URL of the request.
    Url,
    /// `$method`: its HTTP method.
    Method,
    /// `$statusCode`: the response's status.
    StatusCode,
    /// `$request.header.NAME` / `$response.header.NAME`, case-insensitive.
    Header(Side, String),
    /// `$request.query.NAME`.
    Query(Side, String),
    /// `$request.path.NAME`.
    Path(Side, String),
    /// `$request.body` or `$request.body#/json/pointer`, the pointer's
    /// reference tokens already unescaped.
    Body(Side, Option<Vec<String>>),
}

/// Why an expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid runtime expression `{text}` at position {position}: {reason}")]
pub struct ParseError {
    /// The text that was parsed.
    pub text: String,
    /// Byte offset of the problem in `text`.
    pub position: usize,
    /// What is wrong there.
    pub reason: String,
}

/// Why a template cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// An expression in it is malformed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// An expression has no value in this exchange.
    #[error("runtime expression `{expression}` has no value: {reason}")]
    Missing {
        /// The expression, as written.
        expression: String,
        /// What is missing.
        reason: String,
    },
    /// A `{` has no matching `}`.
    #[error("unclosed `{{` at position {position} of `{template}`")]
    Unclosed {
        /// The template.
        template: String,
        /// Byte offset of the `{`.
        position: usize,
    },
}

/// One side of an HTTP exchange, as expressions see it.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// Headers; names are matched ignoring case.
    pub headers: BTreeMap<String, String>,
    /// Query parameters (requests only).
    pub query: BTreeMap<String, String>,
    /// Path parameters (requests only).
    pub path: BTreeMap<String, String>,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

/// The subscription request and, if given, its response.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// The request's URL: absolute, or only a path (which `$url` refuses).
    pub url: String,
    /// The request's method.
    pub method: String,
    /// The request.
    pub request: Message,
    /// The response's status, if there is a response.
    pub status_code: Option<u16>,
    /// The response, if any.
    pub response: Option<Message>,
}

/// Characters of an RFC 7230 `token`, which header names are.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parses one runtime expression (without braces).
pub fn parse(text: &str) -> Result<Expression, ParseError> {
    let fail = |position: usize, reason: &str| ParseError {
        text: text.to_string(),
        position,
        reason: reason.to_string(),
    };
    match text {
        "$url" => return Ok(Expression::Url),
        "$method" => return Ok(Expression::Method),
        "$statusCode" => return Ok(Expression::StatusCode),
        _ => {}
    }
    let (side, rest, at) = if let Some(rest) = text.strip_prefix("$request.") {
        (Side::Request, rest, "$request.".len())
    } else if let Some(rest) = text.strip_prefix("$response.") {
        (Side::Response, rest, "$response.".len())
    } else if !text.starts_with('$') {
        return Err(fail(0, "an expression starts with `$`"));
    } else {
        return Err(fail(
            1,
            "expected `url`, `method`, `statusCode`, `request.` or `response.`",
        ));
    };
    if let Some(name) = rest.strip_prefix("header.") {
        let start = at + "header.".len();
        if name.is_empty() {
            return Err(fail(start, "a header name is required"));
        }
        if let Some((i, _)) = name.char_indices().find(|(_, c)| !is_tchar(*c)) {
            return Err(fail(
                start + i,
                "a header name is a token (letters, digits, `!#$%&'*+-.^_`|~`)",
            ));
        }
        return Ok(Expression::Header(side, name.to_string()));
    }
    for (prefix, make) in [
        (
            "query.",
            Expression::Query as fn(Side, String) -> Expression,
        ),
        ("path.", Expression::Path),
    ] {
        if let Some(name) = rest.strip_prefix(prefix) {
            if side == Side::Response {
                return Err(fail(at, "responses have no query or path parameters"));
            }
            if name.is_empty() {
                return Err(fail(at + prefix.len(), "a parameter name is required"));
            }
            return Ok(make(side, name.to_string()));
        }
    }
    if let Some(after) = rest.strip_prefix("body") {
        if after.is_empty() {
            return Ok(Expression::Body(side, None));
        }
        let Some(pointer) = after.strip_prefix('#') else {
            return Err(fail(at + 4, "expected `#` and a JSON pointer after `body`"));
        };
        return pointer_tokens(pointer)
            .map(|tokens| Expression::Body(side, Some(tokens)))
            .map_err(|(i, reason)| fail(at + 5 + i, reason));
    }
    Err(fail(at, "expected `header.`, `query.`, `path.` or `body`"))
}

/// Splits an RFC 6901 JSON pointer into unescaped reference tokens.
fn pointer_tokens(pointer: &str) -> Result<Vec<String>, (usize, &'static str)> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    if !pointer.starts_with('/') {
        return Err((0, "a JSON pointer starts with `/`"));
    }
    let mut tokens = Vec::new();
    let mut offset = 1;
    for raw in pointer[1..].split('/') {
        let mut token = String::new();
        let mut chars = raw.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '~' {
                match chars.next() {
                    Some((_, '0')) => token.push('~'),
                    Some((_, '1')) => token.push('/'),
                    _ => return Err((offset + i, "`~` must be followed by `0` or `1`")),
                }
            } else {
                token.push(c);
            }
        }
        offset += raw.len() + 1;
        tokens.push(token);
    }
    Ok(tokens)
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |s: &Side| match s {
            Side::Request => "$request",
            Side::Response => "$response",
        };
        match self {
            Expression::Url => f.write_str("$url"),
            Expression::Method => f.write_str("$method"),
            Expression::StatusCode => f.write_str("$statusCode"),
            Expression::Header(s, name) => write!(f, "{}.header.{name}", side(s)),
            Expression::Query(s, name) => write!(f, "{}.query.{name}", side(s)),
            Expression::Path(s, name) => write!(f, "{}.path.{name}", side(s)),
            Expression::Body(s, None) => write!(f, "{}.body", side(s)),
            Expression::Body(s, Some(tokens)) => {
                write!(f, "{}.body#", side(s))?;
                for token in tokens {
                    write!(f, "/{}", token.replace('~', "~0").replace('/', "~1"))?;
                }
                Ok(())
            }
        }
    }
}

impl Expression {
    /// The expression's value in `exchange`, as text: strings as they are,
    /// other JSON as JSON text.
    pub fn evaluate(&self, exchange: &Exchange) -> Result<String, RenderError> {
        let missing = |reason: &str| RenderError::Missing {
            expression: self.to_string(),
            reason: reason.to_string(),
        };
        let message = |side: &Side| match side {
            Side::Request => Ok(&exchange.request),
            Side::Response => exchange
                .response
                .as_ref()
                .ok_or_else(|| missing("there is no response")),
        };
        match self {
            Expression::Url if exchange.url.is_empty() => {
                Err(missing("the subscribe request has no `url`"))
            }
            Expression::Url if exchange.url.starts_with('/') && !exchange.url.starts_with("//") => {
                Err(missing(&format!(
                    "the subscribe request's `url` is only a path (`{}`); the template uses \
                     `$url`, which needs the absolute URL the API was called with",
                    exchange.url
                )))
            }
            Expression::Url => Ok(exchange.url.clone()),
            Expression::Method => Ok(exchange.method.clone()),
            Expression::StatusCode => exchange
                .status_code
                .map(|s| s.to_string())
                .ok_or_else(|| missing("there is no response")),
            Expression::Header(side, name) => message(side)?
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .ok_or_else(|| missing("no such header")),
            Expression::Query(side, name) => message(side)?
                .query
                .get(name)
                .cloned()
                .ok_or_else(|| missing("no such query parameter")),
            Expression::Path(side, name) => message(side)?
                .path
                .get(name)
                .cloned()
                .ok_or_else(|| missing("no such path parameter")),
            Expression::Body(side, pointer) => {
                let body = message(side)?
                    .body
                    .as_ref()
                    .ok_or_else(|| missing("there is no body"))?;
                let mut value = body;
                for token in pointer.iter().flatten() {
                    value = match value {
                        Value::Object(map) => map.get(token),
                        Value::Array(items) => index(token).and_then(|i| items.get(i)),
                        _ => None,
                    }
                    .ok_or_else(|| missing("the body has nothing at that pointer"))?;
                }
                Ok(match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
            }
        }
    }
}

/// An RFC 6901 array index: `0` or digits without a leading zero.
fn index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// Renders a template: a whole-string expression (`$request.body#/url`),
/// or text with expressions embedded in braces.
pub fn render(template: &str, exchange: &Exchange) -> Result<String, RenderError> {
    walk(template, |expression| expression.evaluate(exchange))
}

/// Checks that every expression in a template parses, without evaluating
/// any: what can be known about a template before it meets a request.
pub fn check(template: &str) -> Result<(), RenderError> {
    walk(template, |_| Ok(String::new())).map(drop)
}

/// Whether a template holds any expression, so its value is only known
/// once rendered.
pub fn has_expressions(template: &str) -> bool {
    template.starts_with('$') || template.contains('{')
}

/// Copies a template's text, replacing each expression by `value`'s answer.
fn walk(
    template: &str,
    mut value: impl FnMut(&Expression) -> Result<String, RenderError>,
) -> Result<String, RenderError> {
    if template.starts_with('$') {
        return value(&parse(template)?);
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut offset = 0;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| RenderError::Unclosed {
            template: template.to_string(),
            position: offset + open,
        })?;
        let inner = &after[..close];
        out.push_str(&value(
            &parse(inner).map_err(|e| shift(e, offset + open + 1))?,
        )?);
        offset += open + close + 2;
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Makes an embedded expression's error position relative to the template.
fn shift(mut err: ParseError, by: usize) -> ParseError {
    err.position += by;
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The exchange behind the specification's examples table.
    fn exchange() -> Exchange {
        let headers = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Exchange {
            url: "https://example.org/subscribe/myevent?queryUrl=https://clientdomain.com/stillrunning".into(),
            method: "POST".into(),
            request: Message {
                headers: headers(&[("Content-Type", "application/json"), ("Accept", "application/json")]),
                query: [("queryUrl".to_string(), "https://clientdomain.com/stillrunning".to_string())].into(),
                path: [("eventType".to_string(), "myevent".to_string())].into(),
                body: Some(json!({
                    "failedUrl": "https://clientdomain.com/failed",
                    "successUrls": ["https://clientdomain.com/fast", "https://clientdomain.com/medium", "https://clientdomain.com/slow"],
                    "user": {"uuid": "8a2f"},
                    "a/b": {"m~n": 7}
                })),
            },
            status_code: Some(201),
            response: Some(Message {
                headers: headers(&[("Location", "https://example.org/subscription/1"), ("Server", "hookgate-test")]),
                body: Some(json!({"status": "active"})),
                ..Message::default()
            }),
        }
    }

    #[test]
    fn every_row_of_the_specification_examples_evaluates() {
        let rows = [
            ("$method", "POST"),
            ("$request.path.eventType", "myevent"),
            (
                "$request.query.queryUrl",
                "https://clientdomain.com/stillrunning",
            ),
            ("$request.header.content-Type", "application/json"),
            ("$request.header.accept", "application/json"),
            (
                "$request.body#/failedUrl",
                "https://clientdomain.com/failed",
            ),
            (
                "$request.body#/successUrls/2",
                "https://clientdomain.com/slow",
            ),
            ("$request.body#/user/uuid", "8a2f"),
            (
                "$response.header.Location",
                "https://example.org/subscription/1",
            ),
            ("$response.header.Server", "hookgate-test"),
            ("$response.body#/status", "active"),
            ("$statusCode", "201"),
            (
                "$url",
                "https://example.org/subscribe/myevent?queryUrl=https://clientdomain.com/stillrunning",
            ),
        ];
        for (expression, expected) in rows {
            assert_eq!(
                render(expression, &exchange()).unwrap(),
                expected,
                "{expression}"
            );
        }
    }

    #[test]
    fn pointers_follow_rfc_6901_escapes_and_indexes() {
        assert_eq!(
            render("$request.body#/a~1b/m~0n", &exchange()).unwrap(),
            "7"
        );
        assert_eq!(
            render("$request.body#/successUrls/0", &exchange()).unwrap(),
            "https://clientdomain.com/fast"
        );
        assert!(
            render("$request.body#/successUrls/01", &exchange()).is_err(),
            "no leading zeros"
        );
        assert!(render("$request.body#/successUrls/-", &exchange()).is_err());
        let whole = render("$request.body#/user", &exchange()).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&whole).unwrap(),
            json!({"uuid": "8a2f"})
        );
    }

    #[test]
    fn expressions_embed_in_text_with_braces() {
        let url = render(
            "https://x.example/cb?id={$request.body#/user/uuid}&e={$request.path.eventType}",
            &exchange(),
        );
        assert_eq!(url.unwrap(), "https://x.example/cb?id=8a2f&e=myevent");
        assert_eq!(
            render("no expressions", &exchange()).unwrap(),
            "no expressions"
        );
    }

    #[test]
    fn malformed_expressions_say_where_and_why() {
        let err = parse("$request.bodyx").unwrap_err();
        assert_eq!(err.position, 13);
        let err = parse("$request.header.bad name").unwrap_err();
        assert_eq!(err.position, 19);
        assert!(err.to_string().contains("token"));
        let err = parse("$request.body#/a~2").unwrap_err();
        assert_eq!((err.position, err.reason.contains("`~`")), (16, true));
        assert_eq!(parse("url").unwrap_err().position, 0);
        assert_eq!(parse("$nope").unwrap_err().position, 1);
        assert!(parse("$response.query.x").is_err());
        let embedded = render("https://x/{$request.nope}", &exchange()).unwrap_err();
        assert!(
            matches!(
                embedded,
                RenderError::Parse(ParseError { position: 20, .. })
            ),
            "{embedded:?}"
        );
        let unclosed = render("https://x/{$url", &exchange()).unwrap_err();
        assert!(matches!(
            unclosed,
            RenderError::Unclosed { position: 10, .. }
        ));
    }

    #[test]
    fn a_missing_value_names_the_expression() {
        let err = render("$request.body#/nothing/here", &exchange()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "runtime expression `$request.body#/nothing/here` has no value: the body has nothing at that pointer"
        );
        let no_response = Exchange {
            response: None,
            status_code: None,
            ..exchange()
        };
        let err = render("{$response.header.Location}", &no_response).unwrap_err();
        assert!(err.to_string().contains("$response.header.Location"));
    }

    proptest::proptest! {
        /// Any text at all: parsing and rendering return, never panic, and
        /// an error's position lies within the text.
        #[test]
        fn parsing_any_text_never_panics(text in r"[$a-zA-Z.#/~0-9 {}é_-]{0,40}") {
            if let Err(err) = parse(&text) {
                proptest::prop_assert!(err.position <= text.len(), "{err:?}");
            }
            let _ = render(&text, &exchange());
        }

        /// Every well-formed expression prints back as text that parses to
        /// the same expression.
        #[test]
        fn well_formed_expressions_round_trip(
            side in proptest::prop_oneof![proptest::strategy::Just("$request"), proptest::strategy::Just("$response")],
            kind in 0..4u8,
            name in r"[A-Za-z0-9_-]{1,12}",
            tokens in proptest::collection::vec(r"[a-z0-9~/ ]{0,6}", 0..4),
        ) {
            let text = match kind {
                0 => format!("{side}.header.{name}"),
                1 => format!("$request.query.{name}"),
                2 => format!("$request.path.{name}"),
                _ => {
                    let pointer: String = tokens
                        .iter()
                        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
                        .collect();
                    format!("{side}.body#{pointer}")
                }
            };
            let parsed = parse(&text).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert_eq!(parse(&parsed.to_string()), Ok(parsed));
        }
    }
}
