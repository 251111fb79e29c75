package ring

import (
	"testing"

	"github.com/shmexec/shmexec/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func() int{
		"ring-producer":       childProducer,
		"ring-consumer":       childConsumer,
		"ring-chaos-producer": childChaosProducer,
	})
}
