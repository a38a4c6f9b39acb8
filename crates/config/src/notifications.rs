//! `[notifications]`: where failures, recoveries and warnings are sent. (Being written.)

use toml::Value;

use crate::error::Result;
use crate::spans::Document;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationsConfig {}

impl NotificationsConfig {
    pub(crate) fn from_value(_value: &Value, _doc: &Document) -> Result<Self> {
        Ok(NotificationsConfig {})
    }
}
