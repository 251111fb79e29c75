package executor

// The environment handshake between a supervisor and the worker processes
// it starts (as hashicorp/go-plugin does it): a magic cookie and the
// protocol version, then the worker's identity. The names are kept here
// and nowhere else.
const (
	envCookie     = "SHMEXEC_WORKER_COOKIE"
	cookieValue   = "shmexec-worker-7c1e9a4d"
	envProtocol   = "SHMEXEC_PROTOCOL"
	envWorker     = "SHMEXEC_WORKER"     // "worker index:party index:generation"
	envFD         = "SHMEXEC_SEGMENT_FD" // the inherited memfd
	envSupervisor = "SHMEXEC_SUPERVISOR" // the supervisor's pid
	envMaxTasks   = "SHMEXEC_MAX_TASKS"
	envPassFDs    = "SHMEXEC_PASS_FDS" // "4,5": the descriptors of Config.PassFiles
	// envStderrFD names the descriptor of the pool's own standard error.
	// Until it is ready a worker's standard error is a pipe that the
	// supervisor reads (it forwards every byte and keeps the tail for the
	// start-up failure's reason); once ready the worker moves this
	// descriptor onto 2 and writes to the pool's standard error directly.
	envStderrFD = "SHMEXEC_STDERR_FD"

	// segmentFD is where the worker finds the segment: the first of
	// exec.Cmd.ExtraFiles.
	segmentFD = 3

	// exit statuses of a worker process
	exitOK          = 0
	exitNotWorker   = 2
	exitInitFailed  = 3
	exitAttachError = 4
	exitOrphaned    = 5
)
