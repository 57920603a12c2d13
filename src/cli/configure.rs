//! `configure`: set up a profile, interactively or from flags.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Parser;

use super::{ask, load_config, Cli, EXIT_OK};
use crate::config::{self, Profile};
use crate::inventory::Inventory;
use crate::model::{Destination, StoreId};
use crate::stores;

#[derive(Parser, Debug, Default)]
pub(super) struct ConfigureArgs {
    #[arg(long)]
    access_key: Option<String>,
    #[arg(long)]
    secret_key: Option<String>,
    #[arg(long)]
    s3_bucket: Option<String>,
    #[arg(long)]
    glacier_vault: Option<String>,
    #[arg(long)]
    default_destination: Option<Destination>,
    #[arg(long)]
    region_name: Option<String>,
    #[arg(long)]
    auth_version: Option<String>,
    #[arg(long)]
    auth_url: Option<String>,
    /// Directory of the local store
    #[arg(long)]
    local_path: Option<PathBuf>,
    /// S3-compatible endpoint (MinIO, Ceph, R2...)
    #[arg(long)]
    endpoint_url: Option<String>,
}

pub(super) fn run(cli: &Cli, a: &ConfigureArgs) -> Result<i32> {
    let mut config = load_config(cli)?;
    // The stores before the change, with the rows of older versions placed in them while the old settings can.
    let inventory = Inventory::default_path().and_then(Inventory::open).ok().map(Arc::new);
    let before = inventory.as_ref().map(|inv| {
        let _ = stores::place_unknown_rows(&config, inv);
        identities(&config, &cli.profile, inv)
    });
    let mut p: Profile = config.profile(&cli.profile).unwrap_or_default();
    let from_flags = a.access_key.is_some()
        || a.secret_key.is_some()
        || a.s3_bucket.is_some()
        || a.glacier_vault.is_some()
        || a.default_destination.is_some()
        || a.region_name.is_some()
        || a.auth_version.is_some()
        || a.auth_url.is_some()
        || a.local_path.is_some()
        || a.endpoint_url.is_some();
    if from_flags {
        set(&mut p.access_key, &a.access_key);
        set(&mut p.secret_key, &a.secret_key);
        set(&mut p.s3_bucket, &a.s3_bucket);
        set(&mut p.glacier_vault, &a.glacier_vault);
        if let Some(d) = a.default_destination {
            p.default_destination = Some(d);
        }
        set(&mut p.region_name, &a.region_name);
        set(&mut p.auth_version, &a.auth_version);
        set(&mut p.auth_url, &a.auth_url);
        set(&mut p.endpoint_url, &a.endpoint_url);
        if let Some(l) = &a.local_path {
            p.local_path = Some(l.clone());
        }
    } else {
        p.access_key = ask("AWS Access Key: ", p.access_key.as_deref())?;
        p.secret_key = ask("AWS Secret Key: ", p.secret_key.as_deref())?;
        p.s3_bucket = ask("S3 Bucket Name: ", p.s3_bucket.as_deref())?;
        p.glacier_vault = ask("Glacier Vault Name: ", p.glacier_vault.as_deref())?;
        loop {
            let d = ask("Default destination (local): ", Some(p.destination().as_str()))?;
            match d.unwrap_or_else(|| config::DEFAULT_DESTINATION.to_string()).parse() {
                Ok(d) => {
                    p.default_destination = Some(d);
                    break;
                }
                Err(e) => eprintln!("{e}"),
            }
        }
        p.region_name = ask("Region Name (us-east-1): ", p.region_name.as_deref().or(Some("us-east-1")))?;
        if p.destination() == Destination::Swift {
            p.auth_version = ask("Swift Auth Version: ", p.auth_version.as_deref())?;
            p.auth_url = ask("Swift Auth URL: ", p.auth_url.as_deref())?;
        }
    }
    config.set_profile(&cli.profile, p);
    config.save()?;
    println!("saved profile {} in {}", cli.profile, config.path().display());
    if let (Some(inv), Some(before)) = (&inventory, before) {
        let after = identities(&config, &cli.profile, inv);
        for (d, old) in before.iter().filter(|(d, old)| !old.is_unknown() && after.get(*d) != Some(*old)) {
            let n = inv.count_in_store(old).unwrap_or(0);
            if n == 0 {
                continue;
            }
            let how = match old.local_dir() {
                Some(dir) => format!(
                    "restore, verify, delete and the mount still read them there while {} exists",
                    dir.display()
                ),
                None => format!("reach them with a profile whose {d} settings name that store (-p PROFILE)"),
            };
            eprintln!("note: {n} backup(s) stay in {old}, which profile {} no longer uses; {how}", cli.profile);
        }
    }
    Ok(EXIT_OK)
}

/// The store identity of each kind of store of a profile.
fn identities(
    config: &config::Config,
    profile_name: &str,
    inventory: &Arc<Inventory>,
) -> BTreeMap<Destination, StoreId> {
    let profile = config.profile(profile_name).unwrap_or_default();
    let s = stores::Stores { config, profile_name, profile: &profile, inventory, layer: None };
    Destination::ALL.into_iter().filter_map(|d| Some((d, s.identity(d).ok()?))).collect()
}

fn set(slot: &mut Option<String>, v: &Option<String>) {
    if v.is_some() {
        slot.clone_from(v);
    }
}
