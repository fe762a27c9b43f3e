//! The host's own secrets (the Kafka client certificate …) from Secrets
//! Manager. Workers never see these.

use aws_sdk_secretsmanager::Client;
use usher_capabilities::CapError;

use crate::error::sdk;

/// Reads secrets from Secrets Manager.
pub struct Secrets {
    client: Client,
}

impl Secrets {
    pub(crate) fn new(client: Client) -> Secrets {
        Secrets { client }
    }

    /// The Secrets Manager client (for tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The text of a secret's current version, by name or ARN. A missing
    /// secret is `NotFound`; a binary-only secret is `Invalid`.
    pub async fn get_secret_string(&self, name: &str) -> Result<String, CapError> {
        let what = format!("Secrets Manager GetSecretValue of `{name}`");
        let out = self
            .client
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| sdk(&what, e))?;
        out.secret_string.ok_or_else(|| {
            CapError::Invalid(format!("{what}: the secret holds binary data, not text"))
        })
    }
}
