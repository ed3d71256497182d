//! The expression builder: an [`Effect`](crate::manifest::effect::Effect)'s update and condition,
//! and the store's other writes, as DynamoDB update and condition expressions. Pure.

use super::item::{attribute, n, s};
use crate::manifest::effect::{self, Attempts, Condition};
use crate::manifest::Status;
#[cfg(test)]
use crate::manifest::{Changes, Transition};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// Builds update and condition expressions with placeholders for every name and value, so no
/// attribute name collides with DynamoDB's reserved words and no value is spliced in.
#[derive(Default)]
pub(super) struct Expr {
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
    sets: Vec<String>,
    removes: Vec<String>,
}

impl Expr {
    pub(super) fn name(&mut self, attr: &str) -> String {
        let placeholder = format!("#{attr}");
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    pub(super) fn value(&mut self, v: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    pub(super) fn set(&mut self, attr: &str, v: AttributeValue) {
        let name = self.name(attr);
        let value = self.value(v);
        self.sets.push(format!("{name} = {value}"));
    }

    fn set_if_absent(&mut self, attr: &str, v: AttributeValue) {
        let name = self.name(attr);
        let value = self.value(v);
        self.sets
            .push(format!("{name} = if_not_exists({name}, {value})"));
    }

    pub(super) fn remove(&mut self, attr: &str) {
        let name = self.name(attr);
        self.removes.push(name);
    }

    pub(super) fn update_expression(&self) -> String {
        let mut e = format!("SET {}", self.sets.join(", "));
        if !self.removes.is_empty() {
            e.push_str(&format!(" REMOVE {}", self.removes.join(", ")));
        }
        e
    }

    /// Appends `entry` to the history (created if absent).
    pub(super) fn append_history(&mut self, entry: &str) {
        let h = self.name("history");
        let empty = self.value(AttributeValue::L(vec![]));
        let ev = self.value(AttributeValue::L(vec![s(entry)]));
        self.sets.push(format!(
            "{h} = list_append(if_not_exists({h}, {empty}), {ev})"
        ));
    }

    /// Adds a move's update: its attributes, its attempt arithmetic and its history entry.
    pub(super) fn update(&mut self, u: &effect::Update) {
        for (attr, v) in &u.set {
            self.set(attr, attribute(v));
        }
        for attr in &u.remove {
            self.remove(attr);
        }
        self.attempts(u.attempts);
        for (attr, v) in &u.set_if_absent {
            self.set_if_absent(attr, attribute(v));
        }
        self.append_history(&u.history);
    }

    /// The attempt arithmetic; names and values only when used (DynamoDB refuses the others).
    fn attempts(&mut self, attempts: Attempts) {
        if attempts == Attempts::Unchanged {
            return;
        }
        let a = self.name("attempts");
        let zero = self.value(n(0));
        match attempts {
            Attempts::Unchanged => {}
            Attempts::Add(delta) => {
                let d = self.value(n(delta));
                self.sets
                    .push(format!("{a} = if_not_exists({a}, {zero}) + {d}"));
            }
            Attempts::Restart => {
                // Both right-hand sides read the item as it was before this update.
                let before = self.name("attempts_before");
                let r = self.name("retries");
                let one = self.value(n(1));
                self.sets.push(format!(
                    "{before} = if_not_exists({before}, {zero}) + if_not_exists({a}, {zero})"
                ));
                self.sets.push(format!("{a} = {zero}"));
                self.sets
                    .push(format!("{r} = if_not_exists({r}, {zero}) + {one}"));
            }
        }
    }

    /// The whole condition of a transition: the statuses it may start from, plus the
    /// expectations the caller set.
    #[cfg(test)]
    fn condition(&mut self, t: Transition, changes: &Changes) -> String {
        self.render_condition(&effect::condition(t, changes))
    }

    /// A move's condition as a condition expression.
    pub(super) fn render_condition(&mut self, c: &Condition) -> String {
        let mut condition = self.allowed_from(c.from);
        if let Some(attempt) = c.attempt {
            let a = self.name("attempts");
            let v = self.value(n(i64::from(attempt)));
            condition = format!("({condition}) AND {a} = {v}");
            if let Some(w) = &c.worker {
                let name = self.name("worker");
                let v = self.value(s(w));
                condition = format!("{condition} AND {name} = {v}");
            }
        }
        if let Some(at) = &c.updated_at {
            let u = self.name("updated_at");
            let v = self.value(s(at));
            condition = format!("({condition}) AND {u} = {v}");
        }
        condition
    }

    #[cfg(test)]
    fn transition_condition(&mut self, t: Transition) -> String {
        self.allowed_from(t.allowed_from())
    }

    fn allowed_from(&mut self, allowed: &[Option<Status>]) -> String {
        let mut parts = Vec::new();
        if allowed.contains(&None) {
            let k = self.name("key");
            parts.push(format!("attribute_not_exists({k})"));
        }
        let statuses: Vec<Status> = allowed.iter().flatten().copied().collect();
        if !statuses.is_empty() {
            let st = self.name("status");
            let values: Vec<String> = statuses
                .iter()
                .map(|s| self.value(AttributeValue::S(s.as_str().to_owned())))
                .collect();
            parts.push(format!("{st} IN ({})", values.join(", ")));
        }
        parts.join(" OR ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_condition_admits_missing_items_and_listed_statuses() {
        let mut x = Expr::default();
        let c = x.transition_condition(Transition::Claim);
        assert!(
            c.starts_with("attribute_not_exists(#key) OR #status IN ("),
            "{c}"
        );
        let statuses: Vec<&str> = x
            .values
            .values()
            .filter_map(|v| v.as_s().ok())
            .map(String::as_str)
            .collect();
        for s in ["discovered", "queued", "failed", "loading"] {
            assert!(statuses.contains(&s), "{s}");
        }
        assert!(!statuses.contains(&"loaded"));
        assert_eq!(x.names["#key"], "key");
    }

    #[test]
    fn fail_condition_never_admits_a_missing_item() {
        let mut x = Expr::default();
        let c = x.transition_condition(Transition::Fail);
        assert_eq!(c, "#status IN (:v0)");
    }

    #[test]
    fn failing_a_claim_needs_its_attempt_and_its_worker() {
        let mut x = Expr::default();
        let changes = Changes {
            worker: Some("w1".into()),
            expect_attempt: Some(2),
            ..Changes::default()
        };
        let c = x.condition(Transition::Fail, &changes);
        assert_eq!(
            c,
            "(#status IN (:v0)) AND #attempts = :v1 AND #worker = :v2"
        );
        assert_eq!(x.values[":v2"].as_s().unwrap(), "w1");
    }

    #[test]
    fn handing_back_needs_the_claims_attempt_and_worker() {
        let mut x = Expr::default();
        let changes = Changes {
            worker: Some("w1".into()),
            expect_attempt: Some(3),
            ..Changes::default()
        };
        let c = x.condition(Transition::HandBack, &changes);
        assert_eq!(
            c,
            "(#status IN (:v0)) AND #attempts = :v1 AND #worker = :v2"
        );
        assert_eq!(x.values[":v0"].as_s().unwrap(), "loading");
    }

    #[test]
    fn operator_moves_can_require_the_item_unchanged() {
        let mut x = Expr::default();
        let changes = Changes {
            expect_updated_at: Some("2024-10-29T11:00:00.000Z".into()),
            ..Changes::default()
        };
        let c = x.condition(Transition::Reload, &changes);
        assert_eq!(c, "(#status IN (:v0)) AND #updated_at = :v1");
        assert_eq!(x.values[":v0"].as_s().unwrap(), "loaded");
        // no expectation: only the statuses
        let mut y = Expr::default();
        assert_eq!(
            y.condition(Transition::Reload, &Changes::default()),
            "#status IN (:v0)"
        );
    }

    #[test]
    fn update_expression_has_set_and_remove() {
        let mut x = Expr::default();
        x.set("status", s("loaded"));
        x.remove("open");
        x.set_if_absent("size", n(3));
        assert_eq!(
            x.update_expression(),
            "SET #status = :v0, #size = if_not_exists(#size, :v1) REMOVE #open"
        );
    }
}
