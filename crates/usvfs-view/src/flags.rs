//! Link flags of a rule, with usvfs's values (stored in the index per layer).

/// Link flags, with usvfs's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct LinkFlags(pub u32);

impl LinkFlags {
    pub const FAIL_IF_EXISTS: u32 = 0x1;
    pub const MONITOR_CHANGES: u32 = 0x2;
    pub const CREATE_TARGET: u32 = 0x4;
    pub const RECURSIVE: u32 = 0x8;
    pub const FAIL_IF_SKIPPED: u32 = 0x10;
    pub const ALL: u32 = 0x1f;

    pub fn has(self, flag: u32) -> bool {
        self.0 & flag != 0
    }
}
