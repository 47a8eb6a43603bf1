//! Schema helpers for fields whose derived schema needs adjusting.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// Schema of a step's pod template: the real `PodTemplateSpec` schema, so the API server checks
/// field names and types at apply time, with the upstream field descriptions dropped to keep the
/// Pipeline CRD small enough for client-side `kubectl apply` (262144-byte annotation limit).
/// `kubectl explain pods.spec` documents those fields. The ServiceAccount fields are bounded (a
/// name is at most 253 characters) so that the admission policy that reads them stays cheap.
pub fn pod_template(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = PodTemplateSpec::json_schema(generator);
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("description");
        obj.values_mut().for_each(strip_descriptions);
        if let Some(props) = obj.get_mut("properties").and_then(|p| p["spec"]["properties"].as_object_mut()) {
            for field in ["serviceAccountName", "serviceAccount"] {
                if let Some(field) = props.get_mut(field).and_then(|f| f.as_object_mut()) {
                    field.insert("maxLength".into(), 253.into());
                }
            }
        }
        obj.insert(
            "description".into(),
            "Pod template of the step's Job, as in a Job's spec.template (see `kubectl explain \
             job.spec.template`). Sluice adds the SLUICE_* environment variables to every \
             container and sets restartPolicy Never."
                .into(),
        );
    }
    schema
}

fn strip_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("description");
            for (key, child) in map.iter_mut() {
                // `properties` maps field names to schemas: a field may be called "description".
                if key == "properties" {
                    if let serde_json::Value::Object(props) = child {
                        props.values_mut().for_each(strip_descriptions);
                    }
                } else {
                    strip_descriptions(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}
