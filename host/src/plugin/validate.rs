//! Upload-time checks that turn a bad `.wasm` into a precise error before
//! anything runs: size, binary kind, imports and exports.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::PluginError;

/// The hook exports every plugin must provide.
pub(crate) const EXPORTS: [&str; 3] = ["transform", "decide", "judge"];

/// Imports a plugin may have. The hookgate interfaces are matched exactly so
/// a plugin built against another contract version gets a clear error.
/// WASI is limited to version 0.2 and to interfaces that reach nothing
/// outside the sandbox: streams, stdio (captured), clocks, randomness, a
/// filesystem with no preopened directories, sockets that refuse every
/// address, and an HTTP client that denies every request.
const ALLOWED_EXACT: [&str; 2] = ["hookgate:plugin/host@0.1.0", "hookgate:plugin/types@0.1.0"];
const ALLOWED_WASI: [&str; 8] = [
    "wasi:io/",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/types@",
    "wasi:http/outgoing-handler@",
];

/// Whether a plugin may import the interface `name`.
fn allowed(name: &str) -> bool {
    if ALLOWED_EXACT.contains(&name) {
        return true;
    }
    let wasi_0_2 = name
        .split_once('@')
        .is_some_and(|(_, version)| version.starts_with("0.2."));
    wasi_0_2 && ALLOWED_WASI.iter().any(|prefix| name.starts_with(prefix))
}

/// Preamble of every WebAssembly binary.
const MAGIC: &[u8; 4] = b"\0asm";

/// Checks the size and the binary header: a component, not a core module.
pub(crate) fn check_binary(bytes: &[u8], limit: usize) -> Result<(), PluginError> {
    if bytes.len() > limit {
        return Err(PluginError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        let reason = if bytes.starts_with(b"(") {
            "this looks like WebAssembly text; upload the binary .wasm".to_string()
        } else {
            "it does not start with the \\0asm header".to_string()
        };
        return Err(PluginError::NotWasm { reason });
    }
    // Bytes 4..8 are the version and layer: layer 0 is a core module,
    // layer 1 a component.
    match bytes[6..8] {
        [0, 0] => Err(PluginError::NotAComponent),
        [1, 0] => Ok(()),
        _ => Err(PluginError::NotWasm {
            reason: format!("unknown WebAssembly layer {:?}", &bytes[4..8]),
        }),
    }
}

/// Checks every import against the allow-list and returns their names.
pub(crate) fn check_imports(
    component: &Component,
    engine: &Engine,
) -> Result<Vec<String>, PluginError> {
    let mut names = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        if !allowed(name) {
            return Err(PluginError::ForbiddenImport {
                import: name.to_string(),
            });
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// Checks that the three hook functions are exported and returns the
/// component's function exports. Signatures are checked later, when the
/// generated bindings look the exports up.
pub(crate) fn check_exports(
    component: &Component,
    engine: &Engine,
) -> Result<Vec<String>, PluginError> {
    let ty = component.component_type();
    let functions: Vec<String> = ty
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
        .map(|(name, _)| name.to_string())
        .collect();
    if let Some(missing) = EXPORTS
        .into_iter()
        .find(|e| !functions.iter().any(|f| f == e))
    {
        return Err(PluginError::MissingExport { export: missing });
    }
    Ok(functions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_module_is_told_to_build_for_wasip2() {
        let module = wat::parse_str("(module)").unwrap();
        let err = check_binary(&module, 1 << 20).unwrap_err();
        assert_eq!(err, PluginError::NotAComponent);
        assert!(err.to_string().contains("--target wasm32-wasip2"));
    }

    #[test]
    fn oversized_upload_names_both_sizes() {
        let err = check_binary(&[0; 100], 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugin is 100 bytes, over the 10-byte component size limit"
        );
    }

    #[test]
    fn text_and_garbage_are_not_wasm() {
        let text = check_binary(b"(component)", 1 << 20).unwrap_err();
        assert!(text.to_string().contains("WebAssembly text"), "{text}");
        let garbage = check_binary(b"PK\x03\x04zipfile", 1 << 20).unwrap_err();
        assert!(garbage.to_string().contains("\\0asm header"), "{garbage}");
    }

    #[test]
    fn wasi_0_2_is_allowed_but_not_other_versions_or_servers() {
        assert!(allowed("wasi:sockets/tcp@0.2.0"));
        assert!(allowed("wasi:http/outgoing-handler@0.2.3"));
        assert!(allowed("wasi:io/streams@0.2.6"));
        assert!(!allowed("wasi:io/streams@0.3.0"));
        assert!(!allowed("wasi:http/incoming-handler@0.2.0"));
        assert!(!allowed("wasi:keyvalue/store@0.2.0"));
        assert!(!allowed("hookgate:plugin/host@0.2.0"));
    }

    #[test]
    fn empty_component_header_passes_the_binary_check() {
        let component = wat::parse_str("(component)").unwrap();
        assert!(check_binary(&component, 1 << 20).is_ok());
    }
}
