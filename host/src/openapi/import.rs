//! Import of an OpenAPI 3.0 or 3.1 document's `callbacks` as templates.
//!
//! Each operation's `callbacks` entry names an event and maps a URL
//! expression to the request the API will send there. Every POST becomes
//! a template, named after the callback; anything else is skipped, with
//! the reason reported.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::templates::Templates;
use crate::domain::{Error, Result, input};
use crate::model::{CallbackInput, Phase, default_actions};

/// How imported templates are filed, for what the document cannot say.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportOptions {
    /// The object type of every template; each callback's name when absent.
    pub object_type: Option<String>,
    /// `after` (the default: an OpenAPI callback notifies asynchronously),
    /// or `before`, where the callback's 2xx response code becomes the
    /// status that allows the event.
    pub phase: Option<Phase>,
    /// Comma-separated actions; all three standard ones when absent.
    pub actions: Option<String>,
}

/// What an import did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// The document's `openapi` version.
    pub openapi: String,
    /// Templates made.
    pub created: Vec<Imported>,
    /// Callbacks not made into templates.
    pub skipped: Vec<Skipped>,
}

/// A template made from a callback.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Imported {
    /// The new template's id.
    pub template_id: String,
    /// The callback's (and template's) name.
    pub name: String,
    /// The operation declaring it, such as `POST /subscribe`.
    pub operation: String,
    /// The URL expression.
    pub url: String,
    /// The status a before-callback expects; absent for after-callbacks,
    /// which succeed on any 2xx.
    pub expected_status: Option<u16>,
}

/// A callback that was not imported.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Skipped {
    /// The callback's name.
    pub name: String,
    /// The operation declaring it.
    pub operation: String,
    /// The URL expression.
    pub url: String,
    /// Why it was skipped.
    pub reason: String,
}

/// One callback request found in a document, whatever its version.
struct Found {
    name: String,
    operation: String,
    url: String,
    /// The callback's HTTP methods, lowercase.
    methods: Vec<String>,
    /// The POST's response codes, as written (`200`, `2XX`, `default`).
    responses: Vec<String>,
}

/// Parses `document` (JSON or YAML) and makes a template of each callback.
pub async fn import(
    templates: &Templates,
    tenant: &str,
    by: &str,
    document: &[u8],
    options: ImportOptions,
) -> Result<ImportReport> {
    // A document can be megabytes of YAML: parse it off the async workers.
    let document = document.to_vec();
    let (openapi, found) = tokio::task::spawn_blocking(move || {
        let doc = parse(&document)?;
        check_refs(&doc)?;
        callbacks(doc)
    })
    .await
    .map_err(|e| Error::Internal(format!("parsing an OpenAPI document failed: {e}")))??;
    let actions = match &options.actions {
        Some(list) => list.split(',').map(|a| a.trim().to_string()).collect(),
        None => default_actions(),
    };
    let phase = options.phase.unwrap_or(Phase::After);
    let mut report = ImportReport {
        openapi,
        created: Vec::new(),
        skipped: Vec::new(),
    };
    for callback in found {
        let skip = |reason: String| Skipped {
            name: callback.name.clone(),
            operation: callback.operation.clone(),
            url: callback.url.clone(),
            reason,
        };
        if !callback.methods.iter().any(|m| m == "post") {
            let methods = callback.methods.join(", ").to_uppercase();
            report.skipped.push(skip(format!(
                "declares {methods}, but callbacks are delivered with POST only"
            )));
            continue;
        }
        let expected_status = match phase {
            Phase::Before => match success_code(&callback.responses) {
                Some(code) => Some(code),
                None => {
                    report.skipped.push(skip(format!(
                        "a before-callback needs an exact 2xx response code to expect, and the POST declares {}",
                        describe(&callback.responses)
                    )));
                    continue;
                }
            },
            Phase::After => None,
        };
        let spec = CallbackInput {
            name: callback.name.clone(),
            object_type: options
                .object_type
                .clone()
                .unwrap_or_else(|| callback.name.clone()),
            phase,
            actions: actions.clone(),
            url: Some(callback.url.clone()),
            expected_status,
            headers: Default::default(),
            enabled: true,
            plugin: None,
            timeout_ms: None,
            retry: None,
        };
        match templates.create(tenant, by, spec).await {
            Ok(template) => report.created.push(Imported {
                template_id: template.id,
                name: callback.name,
                operation: callback.operation,
                url: callback.url,
                expected_status,
            }),
            Err(err @ (Error::Invalid { .. } | Error::Conflict { .. })) => {
                report.skipped.push(skip(err.to_string()));
            }
            Err(other) => return Err(other),
        }
    }
    Ok(report)
}

/// The lowest exact 2xx response code, if any.
fn success_code(responses: &[String]) -> Option<u16> {
    responses
        .iter()
        .filter_map(|code| code.parse::<u16>().ok())
        .filter(|code| (200..300).contains(code))
        .min()
}

fn describe(responses: &[String]) -> String {
    if responses.is_empty() {
        "no responses".into()
    } else {
        format!("responses {}", responses.join(", "))
    }
}

/// Reads JSON or YAML into a JSON value; a syntax error is a 400 saying
/// where. Nesting is checked first, in linear time, because the parsers'
/// time grows faster than the depth.
fn parse(document: &[u8]) -> Result<Value> {
    input::yaml_nesting(document).map_err(|e| match e {
        Error::Invalid { message, .. } => Error::invalid("document", message),
        other => other,
    })?;
    let text = std::str::from_utf8(document)
        .map_err(|e| Error::Malformed(format!("the document is not UTF-8 text: {e}")))?;
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text)
            .map_err(|e| Error::Malformed(format!("the document is not valid JSON: {e}")))
    } else {
        yaml_serde::from_str(text)
            .map_err(|e| Error::Malformed(format!("the document is not valid YAML or JSON: {e}")))
    }
}

/// Longest chain of `$ref`s that point at `$ref`s. Real documents use one
/// or two hops; resolvers follow chains recursively, so they are bounded.
const MAX_REF_CHAIN: usize = 16;

/// Refuses `$ref` chains that loop (`a` → `b` → `a`) or run too long,
/// naming the chain. The typed models resolve references recursively, so
/// a loop would never end; this walks the document without recursing.
fn check_refs(doc: &Value) -> Result<()> {
    let target_of = |value: &Value| -> Option<String> {
        let reference = value.as_object()?.get("$ref")?.as_str()?;
        Some(reference.strip_prefix('#')?.to_string())
    };
    let mut stack = vec![doc];
    while let Some(value) = stack.pop() {
        if let Some(first) = target_of(value) {
            let mut chain = vec![first];
            while let Some(next) = doc
                .pointer(chain.last().expect("never empty"))
                .and_then(target_of)
            {
                let looped = chain.contains(&next);
                chain.push(next);
                if looped || chain.len() > MAX_REF_CHAIN {
                    let shown: Vec<String> = chain.iter().map(|p| format!("#{p}")).collect();
                    let what = if looped {
                        "is a cycle"
                    } else {
                        "is longer than 16 references"
                    };
                    return Err(Error::invalid(
                        "document",
                        format!("the `$ref` chain {} {what}", shown.join(" → ")),
                    ));
                }
            }
        }
        match value {
            Value::Object(map) => stack.extend(map.values()),
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    Ok(())
}

/// The document's version and every callback in it, read with the crate
/// for its version: 3.0 and 3.1 differ in ways a single model cannot hold.
fn callbacks(doc: Value) -> Result<(String, Vec<Found>)> {
    if doc.get("swagger").is_some() {
        return Err(Error::invalid(
            "document",
            "is Swagger 2.0, which has no callbacks; convert it to OpenAPI 3 first",
        ));
    }
    let version = match doc.get("openapi") {
        Some(Value::String(v)) => v.clone(),
        _ => {
            return Err(Error::invalid(
                "document",
                "has no `openapi` version string; is it an OpenAPI 3 document?",
            ));
        }
    };
    let found = if version.starts_with("3.0.") {
        let api: openapiv3::OpenAPI = typed(doc)?;
        v30(&api)
    } else if version.starts_with("3.1.") {
        let spec: oas3::Spec = typed(doc)?;
        v31(&spec)
    } else {
        return Err(Error::invalid(
            "openapi",
            format!("version `{version}` is not supported; OpenAPI 3.0.x and 3.1.x are"),
        ));
    };
    Ok((version, found))
}

/// Decodes the document into a version's model, naming the bad path.
fn typed<T: serde::de::DeserializeOwned>(doc: Value) -> Result<T> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        Error::invalid(
            "document",
            format!("is not a valid OpenAPI document at `{path}`: {}", e.inner()),
        )
    })
}

fn v30(api: &openapiv3::OpenAPI) -> Vec<Found> {
    let mut found = Vec::new();
    for (path, item) in api.paths.iter() {
        let Some(item) = item.as_item() else { continue };
        for (method, operation) in item.iter() {
            for (name, callback) in &operation.callbacks {
                for (url, target) in callback {
                    found.push(Found {
                        name: name.clone(),
                        operation: format!("{} {path}", method.to_uppercase()),
                        url: url.clone(),
                        methods: target.iter().map(|(m, _)| m.to_string()).collect(),
                        responses: target
                            .post
                            .iter()
                            .flat_map(|post| {
                                post.responses
                                    .responses
                                    .keys()
                                    .map(|code| code.to_string())
                                    .chain(
                                        post.responses.default.as_ref().map(|_| "default".into()),
                                    )
                            })
                            .collect(),
                    });
                }
            }
        }
    }
    found
}

fn v31(spec: &oas3::Spec) -> Vec<Found> {
    let mut found = Vec::new();
    for (path, method, operation) in spec.operations() {
        for (name, callback) in operation.callbacks(spec) {
            for (url, target) in &callback.paths {
                found.push(Found {
                    name: name.clone(),
                    operation: format!("{method} {path}"),
                    url: url.clone(),
                    methods: target
                        .methods()
                        .into_iter()
                        .map(|(m, _)| m.as_str().to_lowercase())
                        .collect(),
                    responses: target
                        .post
                        .iter()
                        .flat_map(|post| {
                            post.responses
                                .iter()
                                .flatten()
                                .map(|(code, _)| code.clone())
                        })
                        .collect(),
                });
            }
        }
    }
    found
}
