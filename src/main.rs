fn main() {
    std::process::exit(adjoint::cli::main());
}
