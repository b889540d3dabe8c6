package throttle

// lru is a fixed-capacity table of failure counters with least-recently-used
// eviction. Nodes live in one slice linked by index, so a full table
// allocates nothing more however many distinct keys arrive. Not safe for
// concurrent use: Throttle holds its mutex.
type lru[K comparable] struct {
	max   int
	index map[K]int32
	nodes []node[K]
	free  []int32 // slots of removed nodes, reused first
	head  int32   // most recently used; -1 when empty
	tail  int32   // least recently used; -1 when empty
}

type node[K comparable] struct {
	key        K
	prev, next int32
	count      uint32
	start      int64 // unix nanoseconds of the window's first failure
}

func newLRU[K comparable](max int) *lru[K] {
	return &lru[K]{max: max, index: make(map[K]int32), head: -1, tail: -1}
}

// Len is the number of entries held.
func (l *lru[K]) Len() int { return len(l.index) }

// get returns the node for k, marking it most recently used, or nil.
func (l *lru[K]) get(k K) *node[K] {
	i, ok := l.index[k]
	if !ok {
		return nil
	}
	l.toFront(i)
	return &l.nodes[i]
}

// put returns the node for k, creating a zero one (and evicting the least
// recently used entry when full) if absent; it becomes most recently used.
func (l *lru[K]) put(k K) *node[K] {
	if n := l.get(k); n != nil {
		return n
	}
	var i int32
	switch {
	case len(l.free) > 0:
		i = l.free[len(l.free)-1]
		l.free = l.free[:len(l.free)-1]
	case len(l.nodes) < l.max:
		l.nodes = append(l.nodes, node[K]{})
		i = int32(len(l.nodes) - 1)
	default:
		i = l.tail
		l.unlink(i)
		delete(l.index, l.nodes[i].key)
	}
	l.nodes[i] = node[K]{key: k, prev: -1, next: -1}
	l.index[k] = i
	l.pushFront(i)
	return &l.nodes[i]
}

// remove deletes k if present.
func (l *lru[K]) remove(k K) {
	i, ok := l.index[k]
	if !ok {
		return
	}
	l.unlink(i)
	delete(l.index, k)
	var zero K
	l.nodes[i] = node[K]{key: zero, prev: -1, next: -1}
	l.free = append(l.free, i)
}

func (l *lru[K]) toFront(i int32) {
	if l.head == i {
		return
	}
	l.unlink(i)
	l.pushFront(i)
}

func (l *lru[K]) pushFront(i int32) {
	n := &l.nodes[i]
	n.prev, n.next = -1, l.head
	if l.head >= 0 {
		l.nodes[l.head].prev = i
	}
	l.head = i
	if l.tail < 0 {
		l.tail = i
	}
}

func (l *lru[K]) unlink(i int32) {
	n := &l.nodes[i]
	if n.prev >= 0 {
		l.nodes[n.prev].next = n.next
	} else {
		l.head = n.next
	}
	if n.next >= 0 {
		l.nodes[n.next].prev = n.prev
	} else {
		l.tail = n.prev
	}
	n.prev, n.next = -1, -1
}
