//! One server under test, on the system allocator; see [`async_mvc_bench::server`].

fn main() {
    async_mvc_bench::server::main();
}
