package throttle

import (
	"slices"
	"testing"
)

// keys lists the LRU's keys from most to least recently used, checking the
// back links on the way.
func keys(t *testing.T, l *lru[int]) []int {
	t.Helper()
	var out []int
	prev := int32(-1)
	for i := l.head; i >= 0; i = l.nodes[i].next {
		if l.nodes[i].prev != prev {
			t.Fatalf("node %d: prev %d, want %d", l.nodes[i].key, l.nodes[i].prev, prev)
		}
		out = append(out, l.nodes[i].key)
		prev = i
	}
	if l.tail != prev {
		t.Fatalf("tail %d, want %d", l.tail, prev)
	}
	if len(out) != l.Len() {
		t.Fatalf("list has %d nodes, index %d", len(out), l.Len())
	}
	return out
}

func TestLRU(t *testing.T) {
	tests := []struct {
		name string
		ops  func(l *lru[int])
		want []int // most recent first
	}{
		{"insert order", func(l *lru[int]) { l.put(1); l.put(2); l.put(3) }, []int{3, 2, 1}},
		{"evicts least recent", func(l *lru[int]) { l.put(1); l.put(2); l.put(3); l.put(4) }, []int{4, 3, 2}},
		{"get refreshes", func(l *lru[int]) { l.put(1); l.put(2); l.put(3); l.get(1); l.put(4) }, []int{4, 1, 3}},
		{"put refreshes", func(l *lru[int]) { l.put(1); l.put(2); l.put(1); l.put(3); l.put(4) }, []int{4, 3, 1}},
		{"remove middle", func(l *lru[int]) { l.put(1); l.put(2); l.put(3); l.remove(2) }, []int{3, 1}},
		{"remove head and tail", func(l *lru[int]) { l.put(1); l.put(2); l.put(3); l.remove(3); l.remove(1) }, []int{2}},
		{"remove all then reuse", func(l *lru[int]) {
			l.put(1)
			l.put(2)
			l.remove(1)
			l.remove(2)
			l.put(5)
			l.put(6)
			l.put(7)
			l.put(8)
		}, []int{8, 7, 6}},
		{"remove missing", func(l *lru[int]) { l.put(1); l.remove(9) }, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLRU[int](3)
			tt.ops(l)
			if got := keys(t, l); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if len(l.nodes) > 3 {
				t.Errorf("got %d slots, want ≤ 3", len(l.nodes))
			}
		})
	}
}

func TestLRUCountsSurviveRefresh(t *testing.T) {
	l := newLRU[int](2)
	l.put(1).count = 7
	l.put(2)
	if n := l.get(1); n == nil || n.count != 7 {
		t.Fatalf("get(1): got %v, want count 7", n)
	}
	l.put(3) // evicts 2
	if n := l.get(2); n != nil {
		t.Fatalf("get(2) after eviction: got %+v, want nil", n)
	}
	if n := l.put(2); n.count != 0 {
		t.Fatalf("re-inserted key: got count %d, want 0", n.count)
	}
}
