// Placeholder while the daemon is wired up in this session.
int main() { return 0; }
