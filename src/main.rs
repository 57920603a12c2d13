fn main() {
    std::process::exit(bakthat::cli::main());
}
