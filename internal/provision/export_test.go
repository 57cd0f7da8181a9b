package provision

// LookupsInFlight is how many user ids have look-ups in flight: the entries
// the Provisioner keeps for them must go when the look-ups end.
func LookupsInFlight(pv *Provisioner) int {
	pv.mu.Lock()
	defer pv.mu.Unlock()
	return len(pv.lookups)
}
