//! `retry`, `reload`, `refresh` and `skip`: operator moves. Each records who made it (and why);
//! `retry`, `reload` and `refresh` show their plan and change nothing without `--yes`.

use super::{
    ops_context, print_json, Common, MoveArgs, RefreshArgs, ReloadArgs, RetryArgs, SkipArgs,
};
use crate::error::CoordinatorError;
use crate::ops::moves::{self as ops, Selection};
use crate::ops::{dlq, refresh, Ops};
use sluice_common::config::AwsClients;
use sluice_common::manifest::Status;

pub(super) async fn retry(
    common: &Common,
    aws: &AwsClients,
    a: RetryArgs,
) -> Result<i32, CoordinatorError> {
    let ops = ops_context(common, aws)?;
    if a.dlq {
        if !a.status.is_empty()
            || a.error.is_some()
            || a.range.since.is_some()
            || a.range.until.is_some()
        {
            return Err(CoordinatorError::Usage(
                "retry --dlq takes the dead-letter queue's messages; only --table and --prefix narrow it".to_owned(),
            ));
        }
        let who = if a.moving.yes {
            resolve_who(a.moving.who.who).await
        } else {
            String::new()
        };
        let r = dlq::redrive(&ops, &a.scope.scope(), &who, a.moving.yes).await?;
        if a.moving.json {
            print_json(&r);
        } else {
            print!("{}", dlq::format_redrive(&r));
        }
        return Ok(0);
    }
    let sel = Selection {
        statuses: if a.status.is_empty() {
            ops::RETRY_DEFAULT.to_vec()
        } else {
            a.status
        },
        scope: a.scope.scope(),
        error: a.error,
        since: a.range.since,
        until: a.range.until,
    };
    let plan = ops::plan_retry(&ops, &sel).await?;
    move_or_show(&ops, plan, a.moving).await?;
    Ok(0)
}

pub(super) async fn reload(
    common: &Common,
    aws: &AwsClients,
    a: ReloadArgs,
) -> Result<i32, CoordinatorError> {
    let ops = ops_context(common, aws)?;
    let sel = Selection {
        statuses: vec![Status::Loaded],
        scope: a.scope.scope(),
        error: None,
        since: a.range.since,
        until: a.range.until,
    };
    let plan = ops::plan_reload(&ops, &sel).await?;
    move_or_show(&ops, plan, a.moving).await?;
    Ok(0)
}

pub(super) async fn refresh(
    common: &Common,
    aws: &AwsClients,
    a: RefreshArgs,
) -> Result<i32, CoordinatorError> {
    let ops = ops_context(common, aws)?;
    let plan = refresh::plan_refresh(&ops, &a.table).await?;
    let done = if a.yes {
        let who = resolve_who(a.who.who).await;
        Some(refresh::apply_refresh(&ops, &plan, &who).await?)
    } else {
        None
    };
    if a.json {
        print_json(
            &serde_json::json!({ "plan": plan, "done": done.as_ref().map(|(g, r)| serde_json::json!({"generation": g, "result": r})) }),
        );
    } else {
        print!("{}", refresh::format_refresh(&plan, done.as_ref()));
    }
    Ok(0)
}

pub(super) async fn skip(
    common: &Common,
    aws: &AwsClients,
    a: SkipArgs,
) -> Result<i32, CoordinatorError> {
    let ops = ops_context(common, aws)?;
    let who = resolve_who(a.who.who).await;
    let (key, reason) = (&a.key, &a.reason);
    let r = ops::skip(&ops, key, a.etag.as_deref(), reason, &who).await?;
    if a.json {
        print_json(&r);
    } else {
        for i in &r.skipped {
            println!("skipped {} ({}) by {who}: {reason}", i.key, i.etag);
        }
        for (e, s) in &r.left {
            println!(
                "left {key} ({e}) as it is: {}",
                s.map(|s| s.as_str()).unwrap_or("missing")
            );
        }
    }
    if r.skipped.is_empty() {
        return Err(CoordinatorError::Usage(format!(
            "nothing skipped: no version of {key} is discovered, queued, failed or dead"
        )));
    }
    Ok(0)
}

/// Shows a plan, or (with `--yes`) applies it and shows the result.
async fn move_or_show(ops: &Ops, plan: ops::MovePlan, a: MoveArgs) -> Result<(), CoordinatorError> {
    if !a.yes {
        if a.json {
            print_json(&plan);
        } else {
            print!("{}", ops::format_plan(&plan, false));
            if !plan.files.is_empty() {
                println!("run again with --yes to do it");
            }
        }
        return Ok(());
    }
    let who = resolve_who(a.who.who).await;
    let reason = a.reason.as_deref();
    let result = match plan.command {
        "reload" => ops::apply_reload(ops, &plan, &who, reason).await?,
        _ => ops::apply_retry(ops, &plan, &who, reason).await?,
    };
    if a.json {
        print_json(&serde_json::json!({ "plan": plan, "result": result }));
    } else {
        print!("{}", ops::format_plan(&plan, true));
        print!("{}", ops::format_result(&plan, &result));
    }
    Ok(())
}

/// Who makes an operator move: `--who`, else `$USER`, else the AWS caller's ARN.
pub async fn resolve_who(flag: Option<String>) -> String {
    if let Some(w) = flag.filter(|w| !w.trim().is_empty()) {
        return w;
    }
    if let Ok(u) = std::env::var("USER") {
        if !u.trim().is_empty() {
            return u;
        }
    }
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    match aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
    {
        Ok(id) => id.arn().unwrap_or("unknown").to_owned(),
        Err(e) => {
            tracing::warn!(error = %sluice_common::error::sdk_error_text(&e), "cannot tell who is calling; recording \"unknown\" (pass --who)");
            "unknown".to_owned()
        }
    }
}
