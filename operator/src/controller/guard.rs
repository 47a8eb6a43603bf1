//! Watched Sluice objects that may fail to deserialize. Every watch of a Sluice kind lists
//! [`DeserializeGuard`]s, so one object that the current types reject (a status field written
//! by hand, an object stored under an older schema) is skipped with a log line, a Warning Event
//! and the `sluice_objects_invalid{kind}` gauge, instead of failing the list and with it every
//! controller. The caches hand out only the objects that deserialized.

use std::ops::Deref;
use std::sync::Arc;

use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};

/// A watched object, valid or not.
pub type Guarded<K> = DeserializeGuard<K>;

/// A reference to a watched object, as the controllers' queues key them.
pub type Key<K> = ObjectRef<DeserializeGuard<K>>;

/// The key of `name` in `namespace`.
pub fn key<K>(name: &str, namespace: &str) -> Key<K>
where
    K: Resource<DynamicType = ()>,
{
    ObjectRef::new(name).within(namespace)
}

/// The key of a valid object.
pub fn key_of<K>(obj: &K) -> Key<K>
where
    K: Resource<DynamicType = ()>,
{
    let meta = obj.meta();
    key::<K>(meta.name.as_deref().unwrap_or_default(), meta.namespace.as_deref().unwrap_or_default())
}

/// An object of the cache that deserialized: derefs to the object.
#[derive(Clone, Debug)]
pub struct Valid<K>(Arc<DeserializeGuard<K>>);

impl<K> Valid<K> {
    /// `Some` when `guarded` holds a valid object.
    pub fn new(guarded: Arc<DeserializeGuard<K>>) -> Option<Self> {
        guarded.0.is_ok().then_some(Self(guarded))
    }
}

impl<K> Deref for Valid<K> {
    type Target = K;

    fn deref(&self) -> &K {
        match &self.0.0 {
            Ok(obj) => obj,
            Err(_) => unreachable!("Valid is only built from an object that deserialized"),
        }
    }
}

/// A watch cache of a Sluice kind that shows only the objects that deserialized.
#[derive(Clone)]
pub struct ValidStore<K: Resource<DynamicType = ()> + 'static>(Store<DeserializeGuard<K>>);

impl<K> ValidStore<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    pub fn new(store: Store<DeserializeGuard<K>>) -> Self {
        Self(store)
    }

    /// The valid object `name` in `namespace`, if cached.
    pub fn get(&self, name: &str, namespace: &str) -> Option<Valid<K>> {
        self.0.get(&key::<K>(name, namespace)).and_then(Valid::new)
    }

    /// Every valid object in the cache.
    pub fn state(&self) -> Vec<Valid<K>> {
        self.0.state().into_iter().filter_map(Valid::new).collect()
    }

    /// The first valid object for which `predicate` holds.
    pub fn find(&self, predicate: impl Fn(&K) -> bool) -> Option<Valid<K>> {
        self.0.find(|g| g.0.as_ref().is_ok_and(&predicate)).and_then(Valid::new)
    }

    /// How many cached objects failed to deserialize.
    pub fn invalid_count(&self) -> usize {
        self.0.state().iter().filter(|g| g.0.is_err()).count()
    }

    /// The underlying cache (valid and invalid objects), for readiness.
    pub fn raw(&self) -> &Store<DeserializeGuard<K>> {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector, watcher};
    use serde_json::json;

    use super::*;
    use crate::api::Pipeline;

    fn guarded(value: serde_json::Value) -> DeserializeGuard<Pipeline> {
        serde_json::from_value(value).expect("a guard always deserializes an object with metadata")
    }

    #[test]
    fn invalid_objects_are_counted_and_never_handed_out() {
        let good = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": "good", "namespace": "a"},
            "spec": {"schedule": "0 * * * *", "steps": [{"name": "s", "kind": "Transform",
                "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}]}});
        let mut bad = good.clone();
        bad["metadata"]["name"] = json!("bad");
        // More digits of a second than the Rust time type takes; the API server stores it.
        bad["status"] = json!({"lastScheduleTime": "2026-01-01T00:00:00.1234567891234Z"});
        let (store, mut writer) = reflector::store::<DeserializeGuard<Pipeline>>();
        writer.apply_watcher_event(&watcher::Event::Apply(guarded(good)));
        writer.apply_watcher_event(&watcher::Event::Apply(guarded(bad)));
        let store = ValidStore::new(store);
        assert_eq!(store.invalid_count(), 1);
        assert_eq!(store.state().len(), 1);
        assert!(store.get("bad", "a").is_none());
        assert_eq!(store.get("good", "a").map(|p| p.spec.steps.len()), Some(1));
        assert!(store.find(|p| p.spec.schedule.is_some()).is_some());
    }
}
