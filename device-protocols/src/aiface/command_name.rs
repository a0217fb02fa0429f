//! Every command name a device can receive, including the ones the agent must never send.
//!
//! [`super::Command`] covers what the agent may send. This recogniser is parse-only: the
//! emulator (and any audit tool) uses it to classify what it received, and above all to flag a
//! destructive command should one ever arrive.

use std::fmt;

macro_rules! command_names {
    ($($variant:ident => $wire:literal, $destructive:literal;)*) => {
        /// A command name as found in the `cmd` of a server→device frame.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum CommandName {
            $(
                #[doc = concat!("`", $wire, "`")]
                $variant,
            )*
            /// A name this crate does not know. Treated as destructive: unknown means unsafe.
            Other(String),
        }

        impl CommandName {
            /// Recognises a wire name (already trimmed), case-sensitively as firmware does.
            pub fn from_wire(name: &str) -> CommandName {
                match name {
                    $($wire => CommandName::$variant,)*
                    other => CommandName::Other(other.to_owned()),
                }
            }

            /// The wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $(CommandName::$variant => $wire,)*
                    CommandName::Other(name) => name,
                }
            }

            /// Whether the command deletes or demotes data on the device, or is unknown.
            pub fn is_destructive(&self) -> bool {
                match self {
                    $(CommandName::$variant => $destructive,)*
                    CommandName::Other(_) => true,
                }
            }
        }
    };
}

command_names! {
    GetUserList => "getuserlist", false;
    GetUserInfo => "getuserinfo", false;
    SetUserInfo => "setuserinfo", false;
    DeleteUser => "deleteuser", true;
    GetUserName => "getusername", false;
    SetUserName => "setusername", false;
    EnableUser => "enableuser", false;
    CleanUser => "cleanuser", true;
    GetNewLog => "getnewlog", false;
    GetAllLog => "getalllog", false;
    CleanLog => "cleanlog", true;
    InitSys => "initsys", true;
    Reboot => "reboot", false;
    CleanAdmin => "cleanadmin", true;
    SetTime => "settime", false;
    GetTime => "gettime", false;
    SetDevInfo => "setdevinfo", false;
    GetDevInfo => "getdevinfo", false;
    GetDevCap => "getdevcap", false;
    OpenDoor => "opendoor", false;
    LockCtrl => "lockctrl", false;
    SetDevLock => "setdevlock", false;
    GetDevLock => "getdevlock", false;
    GetUserLock => "getuserlock", false;
    SetUserLock => "setuserlock", false;
    DeleteUserLock => "deleteuserlock", true;
    CleanUserLock => "cleanuserlock", true;
    GetQuestionnaire => "getquestionnaire", false;
    SetQuestionnaire => "setquestionnaire", false;
    GetHoliday => "getholiday", false;
    SetHoliday => "setholiday", false;
    DeleteHoliday => "deleteholiday", true;
    CleanHoliday => "cleanholiday", true;
    SetUserProfile => "setuserprofile", false;
    GetUserProfile => "getuserprofile", false;
    AddUser => "adduser", false;
    GetAllUsers => "getallusers", false;
    DisableDevice => "disabledevice", false;
    EnableDevice => "enabledevice", false;
    Keypad => "keypad", false;
}

impl fmt::Display for CommandName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shorthand for [`CommandName::is_destructive`] on a raw wire name (trimmed first).
pub fn is_destructive(cmd_name: &str) -> bool {
    CommandName::from_wire(cmd_name.trim()).is_destructive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_destructive_commands_are_flagged() {
        for name in [
            "deleteuser",
            "cleanuser",
            "initsys",
            "cleanlog",
            "cleanadmin",
            " cleanuser ",
        ] {
            assert!(is_destructive(name), "{name}");
        }
        assert!(
            is_destructive("formatdisk"),
            "unknown names count as destructive"
        );
        for name in [
            "getuserlist",
            "getuserinfo",
            "setuserinfo",
            "getdevcap",
            "settime",
        ] {
            assert!(!is_destructive(name), "{name}");
        }
        assert_eq!(CommandName::from_wire("getnewlog").as_str(), "getnewlog");
    }
}
