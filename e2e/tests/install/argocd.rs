//! The Argo CD health checks in manifests/argocd under Lua 5.1 (Argo CD uses gopher-lua, a Lua 5.1
//! implementation) with the object as the global `obj`, and only what Argo CD's `util/lua` opens
//! when `resource.customizations.useOpenLibs` is not set: the base, package and table libraries,
//! and a safe `os` (`time` and `date` only) that a script reaches through `require("os")`. So a
//! script that calls `string.format` or `math.floor` fails here as it fails in Argo CD. Every case
//! of each `health_test.yaml` must give the status and message it names, as Argo CD's own test
//! harness checks them; argocd_cli.rs runs the same cases through Argo CD's own CLI.

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

/// A Lua 5.1 state with what Argo CD opens by default (`runLuaWithResourceActionParameters` in
/// Argo CD's util/lua/lua.go): base, package and table, and its safe `os` preloaded for `require`.
/// Argo CD also calls its `OpenSafeOs`, which registers the module under the name "table"; as
/// that module is loaded already, gopher-lua's `RegisterModule` returns it unchanged, so no `os`
/// global exists (argocd_cli.rs checks this against Argo CD itself).
pub fn argo_cd_lua() -> mlua::Result<Lua> {
    let lua = Lua::new_with(StdLib::PACKAGE | StdLib::TABLE | StdLib::OS, LuaOptions::default())?;
    let globals = lua.globals();
    let os: mlua::Table = globals.get("os")?;
    let safe = lua.create_table()?;
    safe.set("time", os.get::<mlua::Function>("time")?)?;
    safe.set("date", os.get::<mlua::Function>("date")?)?;
    let package: mlua::Table = globals.get("package")?;
    package.get::<mlua::Table>("loaded")?.set("os", mlua::Value::Nil)?;
    let loader = lua.create_function(move |_, ()| Ok(safe.clone()))?;
    package.get::<mlua::Table>("preload")?.set("os", loader)?;
    globals.set("os", mlua::Value::Nil)?;
    Ok(lua)
}

/// Runs `kind`'s health.lua on `obj`: (status, message).
pub fn health(kind: &str, obj: &Value) -> Result<(String, String), String> {
    let script = std::fs::read_to_string(kind_dir(kind).join("health.lua")).map_err(|e| e.to_string())?;
    run_health(&format!("{kind}/health.lua"), &script, obj)
}

/// Runs a health script on `obj` in [`argo_cd_lua`]: (status, message).
pub fn run_health(name: &str, script: &str, obj: &Value) -> Result<(String, String), String> {
    let run = || -> mlua::Result<(String, String)> {
        let lua = argo_cd_lua()?;
        lua.globals().set("obj", to_lua(&lua, obj)?)?;
        let hs: mlua::Table = lua.load(script).set_name(name).eval()?;
        Ok((hs.get::<String>("status")?, hs.get::<Option<String>>("message")?.unwrap_or_default()))
    };
    run().map_err(|e| e.to_string())
}

#[test]
fn the_interpreter_is_lua_5_1_with_only_what_argo_cd_opens() {
    let lua = argo_cd_lua().unwrap();
    let version: String = lua.globals().get("_VERSION").unwrap();
    assert_eq!(version, "Lua 5.1");
    let globals: Vec<String> = ["string", "math", "io", "os", "debug"]
        .into_iter()
        .filter(|name| !lua.globals().get::<mlua::Value>(*name).unwrap().is_nil())
        .map(String::from)
        .collect();
    assert!(globals.is_empty(), "Argo CD opens none of {globals:?} by default");
    let obj = json!({"kind": "Pipeline"});
    assert_eq!(run_health("sandbox.lua", SANDBOX_SCRIPT, &obj), Ok(("Healthy".into(), "table,require,safe-os".into())));
}

/// A script that lists which of some globals exist, and whether `require("os")` gives a safe os
/// (with `time`, without `exit`): "table,require,safe-os" in Argo CD, under both runners.
pub const SANDBOX_SCRIPT: &str = r#"local seen = {}
for _, name in ipairs({ "string", "math", "io", "os", "debug", "table", "require" }) do
  if _G[name] ~= nil then table.insert(seen, name) end
end
local os = require("os")
if os.time() > 0 and os.exit == nil then table.insert(seen, "safe-os") end
return { status = "Healthy", message = table.concat(seen, ",") }
"#;

/// The script the negative tests of both runners use: it formats its message with the string
/// library, which Argo CD does not open by default.
pub const STRING_FORMAT_SCRIPT: &str = r#"local hs = {}
hs.status = "Healthy"
hs.message = string.format("%d run(s) active", 1)
return hs
"#;

/// A script that needs the string library fails, as it fails in Argo CD (argocd_cli.rs shows
/// Argo CD's own CLI failing on the same script). Method calls on strings fail too: without the
/// string library a string has no metatable.
#[test]
fn a_script_that_needs_the_string_library_fails() {
    let obj = json!({"kind": "Pipeline", "metadata": {"generation": 1}});
    let error = run_health("format.lua", STRING_FORMAT_SCRIPT, &obj).expect_err("string.format must fail");
    assert!(error.contains("string"), "{error}");
    let method = run_health("method.lua", r#"return {status = "Healthy", message = ("x"):upper()}"#, &obj);
    assert!(method.is_err(), "a string method must fail: {method:?}");
    let floor = run_health("floor.lua", r#"return {status = "Healthy", message = tostring(math.floor(1.5))}"#, &obj);
    assert!(floor.is_err(), "math.floor must fail: {floor:?}");
}

/// A `health_test.yaml` case: input file, object, wanted (status, message).
pub struct Case {
    pub input: PathBuf,
    pub obj: Value,
    pub want: (String, String),
}

/// Reads the cases of `kind`'s health_test.yaml, checking that every file in testdata/ is used.
pub fn cases(kind: &'static str) -> Vec<Case> {
    let dir = kind_dir(kind);
    let tests: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).expect("health_test.yaml"))
            .expect("health_test.yaml is YAML");
    let listed = tests["tests"].as_array().expect("tests: [...]");
    assert!(!listed.is_empty(), "{kind}: no test cases");
    let mut inputs = BTreeSet::new();
    let mut cases = Vec::new();
    for case in listed {
        let input = case["inputPath"].as_str().expect("inputPath");
        inputs.insert(input.to_string());
        let text = std::fs::read_to_string(dir.join(input)).unwrap_or_else(|e| panic!("{kind}/{input}: {e}"));
        let obj: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{kind}/{input}: {e}"));
        assert_eq!(obj["kind"], kind, "{kind}/{input} is a {}", obj["kind"]);
        let want = (
            case["healthStatus"]["status"].as_str().unwrap_or_default().to_string(),
            case["healthStatus"]["message"].as_str().unwrap_or_default().to_string(),
        );
        cases.push(Case { input: dir.join(input), obj, want });
    }
    // Every file in testdata/ is a case.
    for entry in std::fs::read_dir(dir.join("testdata")).expect("testdata/") {
        let file = format!("testdata/{}", entry.expect("entry").file_name().to_string_lossy());
        assert!(inputs.contains(&file), "{kind}/{file} is not used by health_test.yaml");
    }
    cases
}

#[test]
fn health_checks_pass_their_argo_cd_test_cases() {
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for kind in KINDS {
        for case in cases(kind) {
            seen.insert(case.want.0.clone());
            match health(kind, &case.obj) {
                Ok(got) if got == case.want => {}
                other => failures.push(format!("{}: want {:?}, got {other:?}", case.input.display(), case.want)),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let all: BTreeSet<String> = ["Healthy", "Progressing", "Degraded", "Suspended"].map(String::from).into();
    assert_eq!(seen, all, "the cases cover every health status Sluice objects can have");
}

/// Objects as they may look before the operator filled everything in, or when another version
/// of it wrote fewer fields, as `kind` objects.
pub fn partial_objects(kind: &str) -> Vec<Value> {
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
    partial
        .into_iter()
        .map(|mut obj| {
            obj["apiVersion"] = json!("sluice.dev/v1alpha1");
            obj["kind"] = json!(kind);
            obj
        })
        .collect()
}

/// The health statuses Sluice objects can have.
pub const STATUSES: [&str; 4] = ["Healthy", "Progressing", "Degraded", "Suspended"];

/// On [`partial_objects`] the checks still answer, never fail with a Lua error (Argo CD would
/// show Unknown with the error); argocd_cli.rs asks Argo CD the same.
#[test]
fn health_checks_survive_partial_objects() {
    for kind in KINDS {
        for obj in partial_objects(kind) {
            let (status, message) = health(kind, &obj).unwrap_or_else(|e| panic!("{kind} on {obj}: {e}"));
            assert!(STATUSES.contains(&status.as_str()), "{kind} on {obj}: {status}");
            assert!(!message.is_empty(), "{kind} on {obj}: empty message");
        }
    }
}
