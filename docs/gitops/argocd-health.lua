-- Argo CD health check for modeldeploy.io/ModelDeployment (docs/gitops.md). Reads what kstatus reads:
-- status.observedGeneration against metadata.generation, then the Stalled and Ready conditions.
local hs = {}
local status = obj.status
local generation = obj.metadata.generation or 0
if status == nil or status.observedGeneration == nil or status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the modeldeploy operator to reconcile generation " .. tostring(generation)
  return hs
end
local function condition(kind)
  if status.conditions ~= nil then
    for _, c in ipairs(status.conditions) do
      if c.type == kind then
        return c
      end
    end
  end
  return nil
end
local stalled = condition("Stalled")
local ready = condition("Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
if status.phase == "Degraded" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
if ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
else
  hs.message = "Waiting for the ModelDeployment to become Ready"
end
return hs
