//! Bitrix24 REST wording shared with the Vibecode gateway. (The `/rest/…`
//! routes themselves arrive with the Bitrix face.)

pub mod errors;
