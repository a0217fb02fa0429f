// The request type has no delete or clear.
use device_protocols::zk::Request;

fn main() {
    let _ = Request::DeleteUser(7);
    let _ = Request::ClearData;
}
