//! One server under test, on mimalloc (for W8m: the allocator's effect on the RSS that slow
//! readers leave behind); see [`async_mvc_bench::server`].

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    async_mvc_bench::server::main();
}
