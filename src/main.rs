fn main() -> std::process::ExitCode {
    exliar::cli::main()
}
