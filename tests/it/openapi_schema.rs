//! Whether a document is valid OpenAPI 3.1, by two independent checkers:
//! oas3's typed model of the specification, and kynos-openapi's rules
//! that a type cannot hold (path parameters declared, unique operation
//! ids).

use kynos_openapi::model::document::{Document, SpecVersion};
use serde_json::{Value, json};

pub(crate) fn check_3_1(doc: &Value) -> Result<(), String> {
    let spec: oas3::Spec =
        serde_json::from_value(doc.clone()).map_err(|e| format!("oas3 cannot read it: {e}"))?;
    spec.validate_version()
        .map_err(|e| format!("oas3 refuses its version: {e}"))?;
    let document: Document = serde_json::from_value(doc.clone())
        .map_err(|e| format!("kynos-openapi cannot read it: {e}"))?;
    document.validate(SpecVersion::V3_1).map_err(|violations| {
        let lines: Vec<String> = violations.iter().map(ToString::to_string).collect();
        format!("violations:\n{}", lines.join("\n"))
    })
}

pub(crate) fn assert_valid_3_1(doc: &Value) {
    if let Err(why) = check_3_1(doc) {
        panic!("not valid OpenAPI 3.1: {why}\n{doc:#}");
    }
}

#[test]
fn the_checker_rejects_broken_documents() {
    let good = json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {"/things/{id}": {"get": {
            "operationId": "thing",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "ok"}}
        }}}
    });
    assert_eq!(check_3_1(&good), Ok(()));
    let mut old = good.clone();
    old["openapi"] = json!("3.0.3");
    assert!(check_3_1(&old).is_err(), "a 3.0 document is not 3.1");
    let mut undeclared = good.clone();
    undeclared["paths"]["/things/{id}"]["get"]["parameters"] = json!([]);
    assert!(
        check_3_1(&undeclared).is_err(),
        "a path parameter must be declared"
    );
    let mut twins = good.clone();
    twins["paths"]["/others"] = json!({"get": {
        "operationId": "thing",
        "responses": {"200": {"description": "ok"}}
    }});
    assert!(check_3_1(&twins).is_err(), "operation ids are unique");
    let mut untyped = good;
    untyped["paths"]["/things/{id}"]["get"]["responses"] = json!("none");
    assert!(check_3_1(&untyped).is_err(), "responses are a map");
}
