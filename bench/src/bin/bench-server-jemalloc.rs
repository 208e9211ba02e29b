//! One server under test, on jemalloc with its background purging thread (for W8j: the
//! allocator's effect on the RSS that slow readers leave behind); see
//! [`async_mvc_bench::server`].

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    async_mvc_bench::server::main();
}
