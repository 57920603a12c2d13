//! Swift auth: v1 (tempauth, swauth) and Keystone v2 and v3, each giving a [`Session`] (token and storage URL).

use reqwest::blocking::Response;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{header_str, read_json, snippet, AuthVersion, Inner, JsonBody, Session};
use crate::storage::StorageError;
use std::io;

impl Inner {
    pub(super) fn authenticate(&self) -> Result<Session, StorageError> {
        let s = &self.settings;
        match s.auth_version {
            AuthVersion::V1 => self.auth_v1(),
            AuthVersion::V2 => {
                let (tenant, user) = split_user(&s.user);
                let mut auth = json!({"passwordCredentials": {"username": user, "password": s.key}});
                if let Some(t) = tenant {
                    auth["tenantName"] = json!(t);
                }
                let url = keystone_url(&s.auth_url, "tokens");
                let resp = self.exec("authenticating", &|| {
                    Ok(self.client.post(&url).header("Accept", "application/json").json_body(&json!({"auth": auth})))
                })?;
                let resp = self.check_auth_status(resp, &url)?;
                let body: Value = read_json(resp).map_err(|e| self.auth_reply_err(&url, e))?;
                parse_v2(&body, s.region.as_deref()).map_err(|e| self.backend_err(format!("{url}: {e}")))
            }
            AuthVersion::V3 => {
                let (project, user) = split_user(&s.user);
                let user_domain = s.user_domain.as_deref().unwrap_or("Default");
                let project_domain = s.project_domain.as_deref().unwrap_or("Default");
                let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": {
                    "name": user, "domain": {"name": user_domain}, "password": s.key}}}});
                if let Some(p) = project {
                    auth["scope"] = json!({"project": {"name": p, "domain": {"name": project_domain}}});
                }
                let url = keystone_url(&s.auth_url, "auth/tokens");
                let resp = self.exec("authenticating", &|| {
                    Ok(self.client.post(&url).header("Accept", "application/json").json_body(&json!({"auth": auth})))
                })?;
                let resp = self.check_auth_status(resp, &url)?;
                let token = header_str(resp.headers(), "X-Subject-Token")
                    .ok_or_else(|| self.backend_err(format!("{url}: the answer has no X-Subject-Token header")))?;
                let body: Value = read_json(resp).map_err(|e| self.auth_reply_err(&url, e))?;
                let storage_url =
                    parse_v3(&body, s.region.as_deref()).map_err(|e| self.backend_err(format!("{url}: {e}")))?;
                Ok(Session { storage_url, token })
            }
        }
    }

    pub(super) fn auth_v1(&self) -> Result<Session, StorageError> {
        let s = &self.settings;
        let url = s.auth_url.clone();
        let resp = self.exec("authenticating", &|| {
            Ok(self.client.get(&url).header("X-Auth-User", &s.user).header("X-Auth-Key", &s.key))
        })?;
        let resp = self.check_auth_status(resp, &url)?;
        let h = resp.headers();
        let storage_url = header_str(h, "X-Storage-Url");
        let token = header_str(h, "X-Auth-Token").or_else(|| header_str(h, "X-Storage-Token"));
        match (storage_url, token) {
            (Some(u), Some(t)) => Ok(Session { storage_url: u.trim_end_matches('/').to_string(), token: t }),
            _ => Err(self.backend_err(format!(
                "{url} answered without X-Storage-Url and X-Auth-Token; check auth_url (v1 auth usually ends in \
                 /auth/v1.0) and auth_version"
            ))),
        }
    }

    pub(super) fn check_auth_status(&self, resp: Response, url: &str) -> Result<Response, StorageError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.auth_err(format!(
                "{url} answered {status}{}; check access_key ({}), secret_key, auth_url and auth_version",
                snippet(resp),
                match self.settings.auth_version {
                    AuthVersion::V1 => "ACCOUNT:USER",
                    AuthVersion::V2 => "TENANT:USER",
                    AuthVersion::V3 => "PROJECT:USER",
                }
            )));
        }
        Err(self.backend_err(format!(
            "authenticating at {url}: the server answered {status}{}; check auth_url and auth_version",
            snippet(resp)
        )))
    }

    pub(super) fn auth_reply_err(&self, url: &str, e: io::Error) -> StorageError {
        StorageError::Backend {
            store: self.store(),
            message: format!("cannot read the answer of {url}"),
            source: Some(Box::new(e)),
        }
    }
}

/// `TENANT:USER` into its parts (no tenant when there is no `:`).
pub(super) fn split_user(user: &str) -> (Option<&str>, &str) {
    match user.split_once(':') {
        Some((tenant, user)) => (Some(tenant), user),
        None => (None, user),
    }
}

/// `auth_url` with `suffix` appended unless it already ends with it.
pub(super) fn keystone_url(auth_url: &str, suffix: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    if base.ends_with(suffix) {
        base.to_string()
    } else {
        format!("{base}/{suffix}")
    }
}

/// Picks the object-store endpoint: the one in `region` if any, otherwise the first (0.6 ignored the region, and
/// profiles often carry an S3 region name).
pub(super) fn pick_endpoint(candidates: Vec<(Option<String>, String)>, region: Option<&str>) -> Result<String, String> {
    if let Some(r) = region {
        if let Some((_, url)) = candidates.iter().find(|(reg, _)| reg.as_deref() == Some(r)) {
            return Ok(url.trim_end_matches('/').to_string());
        }
    }
    match candidates.first() {
        Some((reg, url)) => {
            if let Some(r) = region {
                tracing::warn!(
                    "region {r} has no object-store endpoint in the catalog; using {url} (region {})",
                    reg.as_deref().unwrap_or("unnamed")
                );
            }
            Ok(url.trim_end_matches('/').to_string())
        }
        None => Err("the service catalog has no public object-store endpoint; check that the token is scoped to a \
                     project (access_key as PROJECT:USER) that has Swift"
            .into()),
    }
}

pub(super) fn object_store_services(catalog: &Value) -> impl Iterator<Item = &Value> {
    catalog.as_array().into_iter().flatten().filter(|s| s["type"].as_str() == Some("object-store"))
}

/// Keystone v2: the token and the object-store endpoint.
pub(super) fn parse_v2(body: &Value, region: Option<&str>) -> Result<Session, String> {
    let access = &body["access"];
    let token =
        access["token"]["id"].as_str().ok_or("the answer has no access.token.id; is this Keystone v2.0?")?.to_string();
    let candidates = object_store_services(&access["serviceCatalog"])
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .filter_map(|e| Some((e["region"].as_str().map(str::to_string), e["publicURL"].as_str()?.to_string())))
        .collect();
    Ok(Session { storage_url: pick_endpoint(candidates, region)?, token })
}

/// Keystone v3: the public object-store endpoint.
pub(super) fn parse_v3(body: &Value, region: Option<&str>) -> Result<String, String> {
    let catalog = &body["token"]["catalog"];
    let candidates = object_store_services(catalog)
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .filter(|e| e["interface"].as_str() == Some("public"))
        .filter_map(|e| {
            let reg = e["region_id"].as_str().or(e["region"].as_str()).map(str::to_string);
            Some((reg, e["url"].as_str()?.to_string()))
        })
        .collect();
    pick_endpoint(candidates, region)
}
