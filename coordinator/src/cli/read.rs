//! `manifest`, `status`, `skipped` and `check`: the operator's questions. None changes anything.

use super::{
    ops_context, print_json, store, CheckArgs, Common, ManifestCommand, SkippedArgs, StatusArgs,
};
use crate::error::CoordinatorError;
use crate::ops::{check, reconcile, report, status};
use sluice_common::config::{required, AwsClients, SourceLocation};
use sluice_common::rules::Rules;
use std::io::IsTerminal;
use tokio_util::sync::CancellationToken;

pub(super) async fn manifest(
    common: &Common,
    aws: &AwsClients,
    command: ManifestCommand,
) -> Result<i32, CoordinatorError> {
    let store = store(common, aws)?;
    match command {
        ManifestCommand::List {
            status,
            table,
            limit,
            json,
        } => {
            let (items, scanned) = report::list(&store, status, table.as_deref(), limit).await?;
            if scanned {
                eprintln!(
                    "note: listing loaded files without --table needs a full scan of the manifest"
                );
            }
            if json {
                print_json(&items);
            } else {
                print!("{}", report::format_list(&items));
                if status.is_none() && table.is_none() {
                    println!("({} files not loaded; loaded files are listed with --status loaded or --table)", items.len());
                }
            }
        }
        ManifestCommand::Show { key, json } => {
            let items = store.history(&key).await?;
            if items.is_empty() {
                return Err(CoordinatorError::Usage(format!(
                    "no manifest item for key {key}"
                )));
            }
            if json {
                print_json(&items);
            } else {
                print!("{}", report::format_show(&items));
            }
        }
        ManifestCommand::Summary { json } => {
            let s = report::summary(&store).await?;
            if json {
                print_json(&s);
            } else {
                print!("{}", report::format_summary(&s));
            }
        }
    }
    Ok(0)
}

pub(super) async fn status(
    common: &Common,
    aws: &AwsClients,
    a: StatusArgs,
    shutdown: &CancellationToken,
) -> Result<i32, CoordinatorError> {
    let ops = ops_context(common, aws)?;
    let opts = status::Options {
        scope: a.scope.scope(),
        window: a.window,
        full: a.full,
    };
    if !a.watch {
        let r = status::collect(&ops, &opts).await?;
        if a.json {
            print_json(&r);
        } else {
            print!("{}", status::format(&r));
        }
        return Ok(0);
    }
    // With --json the frames go to standard error and the last status, as JSON, to standard
    // output.
    let last = if a.json {
        let terminal = std::io::stderr().is_terminal();
        let mut err = std::io::stderr();
        status::watch(&ops, &opts, a.interval, terminal, shutdown, &mut err).await?
    } else {
        let terminal = std::io::stdout().is_terminal();
        let mut out = std::io::stdout();
        status::watch(&ops, &opts, a.interval, terminal, shutdown, &mut out).await?
    };
    if a.json {
        print_json(&last);
    }
    Ok(0)
}

pub(super) async fn skipped(
    common: &Common,
    aws: &AwsClients,
    a: SkippedArgs,
) -> Result<i32, CoordinatorError> {
    let ops = ops_context(common, aws)?;
    let options = reconcile::Options {
        scope: a.scope.scope(),
        check_loaded: a.check_loaded,
        stuck_after: a.stuck_after.unwrap_or(common.requeue_after),
    };
    let r = reconcile::report(&ops, &options).await?;
    if a.json {
        print_json(&r);
    } else {
        print!("{}", reconcile::format(&r));
    }
    Ok(reconcile::exit_code(&r, a.fail_if_any))
}

pub(super) async fn check(
    common: &Common,
    aws: &AwsClients,
    a: CheckArgs,
) -> Result<i32, CoordinatorError> {
    let url = required("SLUICE_DATABASE_URL", common.database_url.clone())?;
    let rules = match &common.config {
        Some(path) if !path.trim().is_empty() => Rules::load(path)?,
        _ => Rules::default(),
    };
    let source = match &common.source {
        Some(s) if !s.trim().is_empty() => Some(SourceLocation::parse(s)?),
        _ => None,
    };
    let lake = source.as_ref().map(|s| (&aws.s3, s));
    let r = check::run(&url, a.role.as_deref(), &rules, lake).await?;
    if a.json {
        print_json(&r);
    } else {
        print!("{}", check::format(&r));
    }
    Ok(check::exit_code(&r))
}
