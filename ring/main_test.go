package ring

import (
	"testing"

	"github.com/shmexec/shmexec/internal/testutil"
)

func TestMain(m *testing.M) {
	roles := map[string]func() int{
		"ring-producer":       childProducer,
		"ring-consumer":       childConsumer,
		"ring-chaos-producer": childChaosProducer,
	}
	for name, f := range benchRoles {
		roles[name] = f
	}
	testutil.Main(m, roles)
}
