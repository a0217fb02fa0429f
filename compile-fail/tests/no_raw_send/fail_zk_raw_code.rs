// CMD_DELETE_USER by number: the code's field is private.
fn main() {
    let _delete_user = device_protocols::zk::Code(18);
}
