//! The Argo CD health checks in manifests/argocd, run the way Argo CD runs them: Lua 5.1 (Argo CD
//! uses gopher-lua, a Lua 5.1 implementation) with the object as the global `obj`, and only the
//! base, table, string and math libraries. Every case of each `health_test.yaml` must give the
//! status and message it names, as Argo CD's own test harness checks them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use mlua::{Lua, LuaOptions, StdLib};
use serde_json::{Value, json};
use sluice_e2e::cluster::repo_root;

pub const KINDS: [&str; 3] = ["Pipeline", "Dataset", "Backfill"];

fn kind_dir(kind: &str) -> PathBuf {
    repo_root().join("manifests/argocd/resource_customizations/sluice.dev").join(kind)
}

/// Converts JSON to a Lua value as Argo CD does for the object: `null` is nil (absent), arrays
/// are 1-based tables, numbers are Lua numbers (floats in 5.1).
fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<mlua::Value> {
    Ok(match value {
        Value::Null => mlua::Value::Nil,
        Value::Bool(b) => mlua::Value::Boolean(*b),
        Value::Number(n) => mlua::Value::Number(n.as_f64().unwrap_or_default()),
        Value::String(s) => mlua::Value::String(lua.create_string(s)?),
        Value::Array(items) => {
            let table = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
        Value::Object(map) => {
            let table = lua.create_table()?;
            for (key, item) in map {
                table.raw_set(key.as_str(), to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
    })
}

/// Runs `kind`'s health.lua on `obj`: (status, message).
pub fn health(kind: &str, obj: &Value) -> Result<(String, String), String> {
    let script = std::fs::read_to_string(kind_dir(kind).join("health.lua")).map_err(|e| e.to_string())?;
    // Lua 5.1 without io, os, package or debug: what Argo CD's sandbox offers and a little less.
    let lua = Lua::new_with(StdLib::TABLE | StdLib::STRING | StdLib::MATH, LuaOptions::default())
        .map_err(|e| e.to_string())?;
    let run = || -> mlua::Result<(String, String)> {
        lua.globals().set("obj", to_lua(&lua, obj)?)?;
        let hs: mlua::Table = lua.load(&script).set_name(format!("{kind}/health.lua")).eval()?;
        Ok((hs.get::<String>("status")?, hs.get::<Option<String>>("message")?.unwrap_or_default()))
    };
    run().map_err(|e| e.to_string())
}

#[test]
fn the_interpreter_is_lua_5_1() {
    let lua = Lua::new_with(StdLib::TABLE | StdLib::STRING | StdLib::MATH, LuaOptions::default()).unwrap();
    let version: String = lua.globals().get("_VERSION").unwrap();
    assert_eq!(version, "Lua 5.1");
}

#[test]
fn health_checks_pass_their_argo_cd_test_cases() {
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for kind in KINDS {
        let dir = kind_dir(kind);
        let tests: Value =
            serde_yaml::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).expect("health_test.yaml"))
                .expect("health_test.yaml is YAML");
        let cases = tests["tests"].as_array().expect("tests: [...]");
        assert!(!cases.is_empty(), "{kind}: no test cases");
        let mut inputs = BTreeSet::new();
        for case in cases {
            let input = case["inputPath"].as_str().expect("inputPath");
            inputs.insert(input.to_string());
            let text = std::fs::read_to_string(dir.join(input)).unwrap_or_else(|e| panic!("{kind}/{input}: {e}"));
            let obj: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{kind}/{input}: {e}"));
            assert_eq!(obj["kind"], kind, "{kind}/{input} is a {}", obj["kind"]);
            let want = (
                case["healthStatus"]["status"].as_str().unwrap_or_default().to_string(),
                case["healthStatus"]["message"].as_str().unwrap_or_default().to_string(),
            );
            seen.insert(want.0.clone());
            match health(kind, &obj) {
                Ok(got) if got == want => {}
                other => failures.push(format!("{kind}/{input}: want {want:?}, got {other:?}")),
            }
        }
        // Every file in testdata/ is a case.
        for entry in std::fs::read_dir(dir.join("testdata")).expect("testdata/") {
            let file = format!("testdata/{}", entry.expect("entry").file_name().to_string_lossy());
            assert!(inputs.contains(&file), "{kind}/{file} is not used by health_test.yaml");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let all: BTreeSet<String> = ["Healthy", "Progressing", "Degraded", "Suspended"].map(String::from).into();
    assert_eq!(seen, all, "the cases cover every health status Sluice objects can have");
}

/// Objects as they may look before the operator filled everything in, or when another version
/// of it wrote fewer fields: the checks still answer, never fail with a Lua error (Argo CD would
/// show Unknown with the error).
#[test]
fn health_checks_survive_partial_objects() {
    let partial = [
        json!({"metadata": {}}),
        json!({"metadata": {"generation": 1}, "spec": {}, "status": {}}),
        json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1}}),
        json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": []}}),
        json!({"metadata": {"generation": 1}, "spec": {"suspend": true},
               "status": {"observedGeneration": 1, "conditions": [{"type": "Ready"}, {"type": "Suspended", "status": "True"}]}}),
        json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2,
               "conditions": [{"type": "Ready", "status": "False"}, {"type": "Degraded", "status": "True", "reason": "RunFailed"}]}}),
        json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "conditions": [
               {"type": "Throttled", "status": "True", "reason": "QuotaExhausted"},
               {"type": "Fresh", "status": "False"}, {"type": "Failed", "status": "True"}]}}),
    ];
    let statuses: BTreeSet<&str> = ["Healthy", "Progressing", "Degraded", "Suspended"].into();
    for kind in KINDS {
        for obj in &partial {
            let mut obj = obj.clone();
            obj["kind"] = json!(kind);
            let (status, message) = health(kind, &obj).unwrap_or_else(|e| panic!("{kind} on {obj}: {e}"));
            assert!(statuses.contains(status.as_str()), "{kind} on {obj}: {status}");
            assert!(!message.is_empty(), "{kind} on {obj}: empty message");
        }
    }
}
