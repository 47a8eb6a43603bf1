//! What a Job create means for the object that wanted the Job: a name conflict is success only
//! when the Job holding the name is controlled by that object (its UID), never by name alone.

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;

use super::Created;

/// A create judged by the owner that asked for it.
#[derive(Clone, Debug)]
pub enum Claim {
    /// Created now.
    Launched,
    /// The name is held by a Job this owner controls (an earlier create of its own).
    Ours(Box<Job>),
    /// The name is held by a Job of another owner, or by one that vanished meanwhile (`None`).
    Taken(Option<Box<Job>>),
    /// Refused by the API server: the message.
    Rejected(String),
}

/// Judges `created` for the owner with UID `owner_uid`.
pub fn claim(created: Created, owner_uid: &str) -> Claim {
    match created {
        Created::Created => Claim::Launched,
        Created::Exists(Some(job)) if controlled_by(&job, owner_uid) => Claim::Ours(job),
        Created::Exists(existing) => Claim::Taken(existing),
        Created::Rejected(message) => Claim::Rejected(message),
    }
}

/// Whether `job`'s controlling owner has UID `uid`.
pub fn controlled_by(job: &Job, uid: &str) -> bool {
    job.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(owner_uid: &str, controller: bool) -> Box<Job> {
        Box::new(
            serde_json::from_value(serde_json::json!({"metadata": {"name": "j", "ownerReferences": [{
                "apiVersion": "sluice.dev/v1alpha1", "kind": "Backfill", "name": "oct",
                "uid": owner_uid, "controller": controller}]}}))
            .unwrap(),
        )
    }

    #[test]
    fn a_name_conflict_is_ours_only_when_we_control_the_holder() {
        assert!(matches!(claim(Created::Created, "me"), Claim::Launched));
        assert!(matches!(claim(Created::Exists(Some(job("me", true))), "me"), Claim::Ours(_)));
        // Same name, another owner's UID (say a Backfill deleted and recreated under one name).
        assert!(matches!(claim(Created::Exists(Some(job("old", true))), "me"), Claim::Taken(Some(_))));
        // Referencing us without being controlled by us is not ours.
        assert!(matches!(claim(Created::Exists(Some(job("me", false))), "me"), Claim::Taken(Some(_))));
        assert!(matches!(claim(Created::Exists(None), "me"), Claim::Taken(None)));
        assert!(matches!(claim(Created::Rejected("quota".into()), "me"), Claim::Rejected(m) if m == "quota"));
    }
}
