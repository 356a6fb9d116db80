//! What a fresh instance does on its first start.

use secrecy::ExposeSecret;
use vexil_config::Settings;
use vexil_model::ProjectKey;
use vexil_store::{Actor, NewSdkKeys, NewToken, Role, Store};

/// What the first start created, to print once.
#[derive(Debug)]
pub struct FirstStart {
    /// The admin token's secret (the bootstrap token, if one was configured).
    pub token: String,
    /// The keys of the default project's environments.
    pub keys: Vec<NewSdkKeys>,
}

/// On a store with no tokens: creates an admin token (`VEXIL_BOOTSTRAP_TOKEN` if set) and project
/// `default` with its environments. On any start: makes sure a configured bootstrap token is accepted.
/// Returns what was created, if anything.
pub async fn first_start(store: &Store, settings: &Settings) -> anyhow::Result<Option<FirstStart>> {
    let chosen = settings.bootstrap_token.as_ref().map(|t| t.expose_secret().to_owned());
    let fresh = store.list_tokens().await?.is_empty();
    if let Some(secret) = &chosen {
        store.ensure_bootstrap_token(secret).await?;
    }
    if !fresh {
        return Ok(None);
    }
    let token = match chosen {
        Some(secret) => secret,
        None => {
            let new = NewToken { name: "first admin".into(), role: Role::Admin, projects: None };
            store.create_token(&Actor::system("first start"), new).await?.1
        }
    };
    let default = ProjectKey::parse("default")?;
    let keys = match store.create_project(&Actor::system("first start"), &default, "Default", "").await {
        Ok((_, keys)) => keys,
        Err(vexil_store::StoreError::AlreadyExists { .. }) => Vec::new(),
        Err(error) => return Err(error.into()),
    };
    Ok(Some(FirstStart { token, keys }))
}
