// The AiFace command type has no destructive variant.
use device_protocols::aiface::Command;

fn main() {
    let _ = Command::DeleteUser { enrollid: 7, backupnum: 13 };
    let _ = Command::CleanUser;
}
